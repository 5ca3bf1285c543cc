//! The built-in decoders: `config/decoders/*.toml`, compiled into the
//! binaries so that extraction works with no config at all.

use super::DecodeError;
use super::model::{Decoder, compile_file};

/// (file name, text) of every built-in decoder file, in the order tried.
pub const FILES: &[(&str, &str)] = &[
    (
        "sshd.toml",
        include_str!("../../../config/decoders/sshd.toml"),
    ),
    (
        "dropbear.toml",
        include_str!("../../../config/decoders/dropbear.toml"),
    ),
    (
        "pam.toml",
        include_str!("../../../config/decoders/pam.toml"),
    ),
    (
        "su-sudo.toml",
        include_str!("../../../config/decoders/su-sudo.toml"),
    ),
    (
        "ftp.toml",
        include_str!("../../../config/decoders/ftp.toml"),
    ),
    (
        "mail.toml",
        include_str!("../../../config/decoders/mail.toml"),
    ),
    (
        "netfilter.toml",
        include_str!("../../../config/decoders/netfilter.toml"),
    ),
    (
        "ids.toml",
        include_str!("../../../config/decoders/ids.toml"),
    ),
    (
        "cisco.toml",
        include_str!("../../../config/decoders/cisco.toml"),
    ),
];

/// The built-in decoders, compiled afresh.
pub fn decoders() -> Result<Vec<Decoder>, DecodeError> {
    let mut out = Vec::new();
    for (name, text) in FILES {
        out.extend(compile_file(text, &format!("builtin:{name}"))?);
    }
    Ok(out)
}
