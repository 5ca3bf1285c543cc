//! `groups`: /etc/group with members (sorted, so reordering is no change).
//! `[gather.groups] not_empty = true` keeps only groups with members.

use serde_json::json;
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::passwd::read_colon_file;

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let lines = read_colon_file(ctx, "/etc/group")?;
    let not_empty = ctx.config.groups.not_empty;
    Ok(lines
        .into_iter()
        .filter_map(|f| {
            let name = f.first().cloned().unwrap_or_default();
            let gid: Option<u32> = f.get(2).and_then(|g| g.parse().ok());
            let mut members: Vec<&str> = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            members.sort_unstable();
            members.dedup();
            if not_empty && members.is_empty() {
                return None;
            }
            let value = json!({"group": name, "gid": gid, "members": members});
            Some(Row::new(name, value))
        })
        .collect())
}
