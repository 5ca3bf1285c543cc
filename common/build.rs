// Re-embed migrations when they change (sqlx::migrate! reads them at compile time).
// Cargo reads this from stdout.
#[allow(clippy::disallowed_macros)]
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
