//! `mysql_users`: the accounts of a MariaDB/MySQL server (`[gather.mysql_users]
//! url`): user, host, authentication plugin, locked/expired flags, whether a
//! password is set, and the privileges as `SHOW GRANTS` prints them with
//! every quoted secret after `PASSWORD`, `USING` or `AS` replaced by `'***'`.
//! Hashes never leave the server in a row. Keyed `user@host`.
//!
//! `SHOW GRANTS FOR` takes no placeholders: the user and host come from
//! `mysql.user` itself and are quoted by doubling `'` (names holding a
//! backslash are reported with an error instead).

use std::str::FromStr;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siemstress_common::snapshot::Row;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Row as _};

use super::Ctx;

/// Accounts on MariaDB 10.4+: user, host, plugin, locked, expired, password set.
const MARIADB_ACCOUNTS: &str = "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), \
     JSON_VALUE(Priv, '$.plugin'), \
     CASE WHEN JSON_EXTRACT(Priv, '$.account_locked') = 'true' THEN 'Y' ELSE 'N' END, \
     CASE WHEN JSON_VALUE(Priv, '$.password_last_changed') = '0' THEN 'Y' ELSE 'N' END, \
     CAST(COALESCE(JSON_VALUE(Priv, '$.authentication_string'), '') NOT IN ('', 'invalid') AS SIGNED) \
     FROM mysql.global_priv ORDER BY User, Host";

/// The same on MySQL 5.7+.
const MYSQL_ACCOUNTS: &str = "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(plugin AS CHAR), \
     CAST(account_locked AS CHAR), CAST(password_expired AS CHAR), \
     CAST(authentication_string <> '' AS SIGNED) FROM mysql.user ORDER BY User, Host";

pub async fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let cfg = &ctx.config.mysql_users;
    let Some(url) = cfg.url.as_deref() else {
        bail!("[gather.mysql_users] url is not set (e.g. url = \"mysql://audit@db1/mysql\")");
    };
    let mut url = url.replacen("mariadb://", "mysql://", 1);
    if let Some(pf) = &cfg.password_file {
        let pw = siemstress_common::files::read_secret(pf, "gather.mysql_users.password_file")?;
        url = siemstress_common::db::with_password(&url, &pw)?;
    }
    let shown = siemstress_common::db::redact(&url);
    let opts = MySqlConnectOptions::from_str(&url).with_context(|| format!("url {shown}"))?;
    let mut conn: MySqlConnection = opts
        .connect()
        .await
        .with_context(|| format!("connect to {shown}"))?;
    // MariaDB keeps account flags in mysql.global_priv (JSON); MySQL in mysql.user.
    let accounts = match sqlx::query(MARIADB_ACCOUNTS).fetch_all(&mut conn).await {
        Ok(a) => a,
        Err(_) => sqlx::query(MYSQL_ACCOUNTS)
            .fetch_all(&mut conn)
            .await
            .context("SELECT from mysql.user")?,
    };
    let redact = regex::Regex::new(r#"(?i)\b(PASSWORD|USING|AS)\s+'(?:[^'\\]|\\.|'')*'"#)
        .expect("static regex");
    let mut rows = Vec::with_capacity(accounts.len());
    for a in accounts {
        let user: String = a.try_get(0).unwrap_or_default();
        let host: String = a.try_get(1).unwrap_or_default();
        let flag = |i: usize| -> Value {
            match a.try_get::<Option<String>, _>(i).ok().flatten().as_deref() {
                Some("Y") => json!(true),
                Some("N") => json!(false),
                _ => Value::Null,
            }
        };
        let mut v = json!({
            "user": user,
            "host": host,
            "plugin": a.try_get::<Option<String>, _>(2).ok().flatten(),
            "account_locked": flag(3),
            "password_expired": flag(4),
            "password_set": a.try_get::<Option<i64>, _>(5).ok().flatten().map(|n| n != 0),
        });
        if user.contains('\\') || host.contains('\\') {
            v["error"] = json!("name holds a backslash; grants not read");
        } else {
            let sql = format!(
                "SHOW GRANTS FOR '{}'@'{}'",
                user.replace('\'', "''"),
                host.replace('\'', "''")
            );
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
            {
                Ok(grants) => {
                    let mut list: Vec<String> = grants
                        .iter()
                        .filter_map(|g| text(g, 0))
                        .map(|g| redact.replace_all(&g, "$1 '***'").into_owned())
                        .collect();
                    list.sort();
                    v["grants"] = json!(list);
                }
                Err(e) => v["error"] = json!(format!("SHOW GRANTS: {e}")),
            }
        }
        rows.push(Row::new(format!("{user}@{host}"), v));
    }
    Ok(rows)
}

/// Column `i` as text, whether the server sent it as text or binary.
fn text(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    row.try_get::<String, _>(i).ok().or_else(|| {
        row.try_get::<Vec<u8>, _>(i)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted() {
        let re = regex::Regex::new(r#"(?i)\b(PASSWORD|USING|AS)\s+'(?:[^'\\]|\\.|'')*'"#).unwrap();
        let g = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'";
        assert_eq!(
            re.replace_all(g, "$1 '***'"),
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '***'"
        );
        let g = "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA mysql_native_password USING '*ABC' OR unix_socket WITH GRANT OPTION";
        assert!(!re.replace_all(g, "$1 '***'").contains("ABC"));
    }
}
