//! siemstress on a local 3-node MariaDB Galera cluster (`siemstress_tests::galera`).

use siemstress_tests::galera::Cluster;

/// Runs the test body on a fresh cluster, or skips it where galera-4 is not
/// installed (a failure under CI=true: `.ci/run` installs it).
fn cluster(n: usize) -> Option<Cluster> {
    match Cluster::available() {
        Ok(()) => Some(Cluster::start(n)),
        Err(why) if std::env::var("CI").is_ok_and(|c| c == "true") => {
            panic!("CI=true but no Galera cluster can run here: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The harness itself: three nodes replicate; a killed node rejoins.
#[test]
fn galera_cluster_replicates_and_a_killed_node_rejoins() {
    let Some(mut c) = cluster(3) else { return };
    c.sql(0, "CREATE DATABASE g");
    c.sql(
        1,
        "CREATE TABLE g.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    c.sql(2, "INSERT INTO g.t (v) VALUES (1), (2)");
    assert_eq!(
        c.sql(0, "SELECT COUNT(*) FROM g.t")[0][0].as_deref(),
        Some("2")
    );
    c.kill(1);
    c.sql(0, "INSERT INTO g.t (v) VALUES (3)");
    c.restart(1);
    assert_eq!(
        c.sql(1, "SELECT COUNT(*) FROM g.t")[0][0].as_deref(),
        Some("3")
    );
}
