//! Which section (event table) a received message goes to, per `[listen]`:
//! its program (`[listen.program]`) first, else its sending network
//! (`[listen.network]`, longest prefix), else the default section. Parsing
//! goes through the same [`LineParser`] as stdin, with the chosen section's
//! time zone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use siemstress_common::config::Section;
use siemstress_common::config::listen::Listen;
use siemstress_common::decode::Decoders;
use siemstress_common::event::Event;
use siemstress_common::parse::LineParser;

/// The sections messages can go to; a target is an index into `sections`.
pub struct Routes {
    pub sections: Vec<Section>,
    default: usize,
    program: HashMap<String, usize>,
    listen: Listen,
    year: Option<i32>,
    decoders: Arc<Decoders>,
}

impl Routes {
    /// Routes of `listen`; `default` is the section of unrouted messages,
    /// `resolve` turns a section name into a section. With `old` (a reload:
    /// the writers are open on its tables), its sections keep their places
    /// and tables, and no section may be added.
    pub fn new(
        listen: Listen,
        default: &str,
        year: Option<i32>,
        decoders: Arc<Decoders>,
        old: Option<&Routes>,
        mut resolve: impl FnMut(&str) -> anyhow::Result<Section>,
    ) -> anyhow::Result<Self> {
        let mut sections: Vec<Section> = Vec::new();
        for o in old.map(|o| &o.sections[..]).unwrap_or_default() {
            let s = resolve(&o.name)?;
            crate::reload::check_same_table(o, &s)?;
            sections.push(s);
        }
        let mut index = |name: &str, sections: &mut Vec<Section>| -> anyhow::Result<usize> {
            if let Some(i) = sections.iter().position(|s| s.name == name) {
                return Ok(i);
            }
            if old.is_some() {
                anyhow::bail!(
                    "[listen] routes to section {name}, which siemparse does not write yet: \
                     restart siemparse to add a table"
                );
            }
            sections.push(resolve(name)?);
            Ok(sections.len() - 1)
        };
        let default = index(default, &mut sections)?;
        let mut program = HashMap::new();
        for (p, s) in &listen.program {
            program.insert(p.clone(), index(s, &mut sections)?);
        }
        for (_, s) in &listen.network {
            index(s, &mut sections)?;
        }
        Ok(Self {
            sections,
            default,
            program,
            listen,
            year,
            decoders,
        })
    }

    /// The target of a peer's messages before their program is known.
    pub fn for_peer(&self, ip: IpAddr) -> usize {
        self.listen
            .network_section(ip)
            .and_then(|name| self.sections.iter().position(|s| s.name == name))
            .unwrap_or(self.default)
    }

    /// The `[listen]` settings.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }
}

/// One peer's parsers (one per section it has sent to: each keeps its own
/// DST state, as one input of stdin does).
pub struct PeerParsers {
    source: Arc<str>,
    /// The peer's section by network (or the default).
    base: usize,
    parsers: Vec<Option<LineParser>>,
}

impl PeerParsers {
    /// Parsers for the messages of `peer`, stored with `source`.
    pub fn new(routes: &Routes, peer: IpAddr, source: &str) -> Self {
        Self {
            source: Arc::from(source),
            base: routes.for_peer(peer),
            parsers: (0..routes.sections.len()).map(|_| None).collect(),
        }
    }

    fn parser(&mut self, routes: &Routes, target: usize) -> &mut LineParser {
        let source = &self.source;
        self.parsers[target].get_or_insert_with(|| {
            let section = &routes.sections[target];
            LineParser::new(section.zone, routes.year, source)
                .with_decoders(routes.decoders.clone())
                .with_format(section.structured.clone())
        })
    }

    /// Parses one message and picks its target.
    pub fn parse(&mut self, routes: &Routes, msg: &[u8], received: i64) -> (usize, Event) {
        let base = self.base;
        let ev = self.parser(routes, base).parse(msg, received);
        let by_program = ev
            .process
            .as_deref()
            .and_then(|p| routes.program.get(p).copied());
        match by_program {
            Some(t) if t != base => {
                // A bare RFC3164 time is read in the target section's zone,
                // a json or regex section's lines in its format.
                let (a, b) = (&routes.sections[t], &routes.sections[base]);
                let same_format = match (&a.structured, &b.structured) {
                    (None, None) => true,
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                    _ => false,
                };
                if a.zone != b.zone || !same_format {
                    return (t, self.parser(routes, t).parse(msg, received));
                }
                (t, ev)
            }
            _ => (base, ev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siemstress_common::config::Config;

    fn routes(text: &str) -> Routes {
        let cfg = Config::parse_str(text).unwrap();
        let decoders = Decoders::load(&cfg).unwrap();
        Routes::new(cfg.listen().unwrap(), "net", None, decoders, None, |n| {
            Ok(cfg.section(n, None)?)
        })
        .unwrap()
    }

    fn target(r: &Routes, peer: &str, line: &str) -> (String, Event) {
        let mut p = PeerParsers::new(r, peer.parse().unwrap(), "tcp://x");
        let (t, ev) = p.parse(r, line.as_bytes(), 0);
        (r.sections[t].name.clone(), ev)
    }

    #[test]
    fn program_then_network_then_default() {
        let r = routes(
            "[section.auth]\ntimezone = \"+0200\"\n[section.dmz]\ntimezone = \"UTC\"\n\
             [listen.program]\nsshd = \"auth\"\n[listen.network]\n\"10.1.0.0/16\" = \"dmz\"\n",
        );
        let ssh = "Mar  1 10:00:00 h sshd[1]: Failed password for root from 192.0.2.1 port 2 ssh2";
        let cron = "Mar  1 10:00:00 h cron[1]: job";
        assert_eq!(target(&r, "10.1.2.3", ssh).0, "auth");
        assert_eq!(target(&r, "10.1.2.3", cron).0, "dmz");
        assert_eq!(target(&r, "192.0.2.9", cron).0, "net");
        assert_eq!(target(&r, "192.0.2.9", "garbage").0, "net");
        // Read in auth's zone (+0200), not dmz's (UTC).
        let (_, a) = target(&r, "10.1.2.3", ssh);
        let (_, d) = target(&r, "10.1.2.3", &ssh.replace("sshd", "sshx"));
        assert_eq!(d.ts - a.ts, 2 * 3600 * 1000);
        assert_eq!(&*a.source, "tcp://x");
    }
}
