//! A small PF rule evaluator: it answers "would this ruleset pass or block this
//! packet?" for the subset of pf.conf(5) that warden renders (`pf/warden.conf.tera`).
//! Pure. `warden reach` and the plan's reachability lines (`reach`) ask it about the
//! rendered rules, and the tests judge the rendered anchor with it. [`Ruleset::parse`]
//! and [`Ruleset::eval`] panic on what they do not model (the tests want that);
//! [`Ruleset::try_parse`] and [`Ruleset::try_eval`] return the same message as an
//! error instead.
//!
//! What it checks:
//! - Parses, and only parses, this syntax: macros `name = "value"` (or an unquoted
//!   single word) with `$name` expansion outside quotes; `table <name> [const]
//!   [persist] { a, b }` of IPv4 addresses and CIDRs, entries optionally `!`-negated;
//!   `nat on IF [inet] [proto P] from X to Y -> (IF) | ADDR`; `rdr on IF [inet]
//!   proto tcp|udp from X to Y port N -> ADDR port M`, where Y may also be `(IF)`, the
//!   interface's own address as the test declares it ([`Ruleset::iface_addr`]); and
//!   filter rules
//!   `pass | block [drop|return] [in|out] [quick] [on IF] [inet|inet6] [proto tcp|udp|icmp
//!   | proto { .. }] [all | [from X] [to Y [port N | port = N | port { a b }]]]
//!   [user NAME | user { a, b }] [keep state]`, where an address is `any`,
//!   `<table>`, an IPv4 address or CIDR, each optionally preceded by `!` (in an
//!   `inet6` rule also an IPv6 address, which matches no packet evaluated here). `#`
//!   comments and `\` line continuations are handled.
//! - Translates before filtering, as PF does: a packet coming in on an interface
//!   (it must say so with [`Packet::dir`] and [`Packet::on`] when an `rdr` rule could
//!   match it) gets the destination of the first matching `rdr` rule, and the filter
//!   rules then judge the translated packet. [`Verdict::rdr`] names the rule and the
//!   new destination.
//! - `user` matches the owner of the packet's socket on the host ([`Packet::user`]);
//!   a packet without one (forwarded jail traffic) never matches it, as in
//!   pf.conf(5). `user` needs `proto tcp|udp`, and negated users (`!=`, which in a
//!   list matches everything, pf.conf(5)) are refused.
//! - Evaluates one IPv4 packet (source, destination, protocol, destination port)
//!   against the filter rules with PF's decision semantics: rules are tried in order,
//!   the last matching rule decides, except that a matching `quick` rule decides at
//!   once; when no rule matches the packet passes (PF's default). A table matches by
//!   longest prefix, and a negated table entry that is the best match means "not in
//!   the table", as in PF. The [`Verdict`] names the deciding rule and its line, and
//!   says whether that rule is `quick`: for a ruleset loaded as an anchor, a quick
//!   decision is final for the whole of PF, whatever the main ruleset says after the
//!   anchor; a non-quick one (or the default pass) is not, and the main ruleset is
//!   not evaluated here.
//! - `log` and `log (OPTIONS)` after the action (and direction) are read and
//!   ignored: they say what pflog records, not what the rule decides.
//! - Refuses (panics with the offending line and the reason) every other shape:
//!   unknown keywords or options, `inet6` outside a filter rule (a filter rule with
//!   `inet6` never matches the IPv4 packets evaluated), `flags`, `no state`, address lists,
//!   interface addresses in filter rules, hostnames, `self`, source ports, port
//!   operators other than `=`, `port` without `proto tcp|udp`, undefined macros and
//!   tables, redefined tables. A template change that renders a new rule shape
//!   therefore fails the test instead of being silently misjudged.
//!
//! What it does not check:
//! - No state tracking beyond the rule decision: `keep state` is accepted and
//!   ignored, so replies, state table limits and TCP flags are not modelled.
//! - No source NAT effects: `nat` rules are parsed (so their syntax is held to
//!   the same subset) and otherwise ignored. The packet is judged with its original,
//!   untranslated addresses, as it enters the host from an agent's jail; what the
//!   main ruleset does with it after translation on the way out is not evaluated.
//! - No interface or direction semantics beyond what is parsed: `on IF` and `in`/`out`
//!   only compare against what the test sets on the packet ([`Packet::on`],
//!   [`Packet::dir`]); if a rule restricts them and the packet does not say, the
//!   evaluation panics rather than guess. Each packet is judged once, not once per
//!   interface it crosses, and anchors, the main pf.conf, `set skip`, scrub and
//!   antispoof are outside the model.
//! - No pfctl validation: acceptance here does not mean pfctl would load the file
//!   (fakebsd's pfctl stands in for the syntax check). Only the rule decision is
//!   modelled, for IPv4 only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// IP protocol of a packet or a rule's `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// Direction of a packet or a rule's `in`/`out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

/// What the deciding rule (or the default) does with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Block,
}

/// One IPv4 packet, as far as the filter looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    /// Destination port: set for tcp and udp, `None` for icmp.
    pub dport: Option<u16>,
    /// Interface the packet is seen on, if the test says.
    pub iface: Option<String>,
    /// Direction the packet is seen in, if the test says.
    pub dir: Option<Dir>,
    /// Owner of the packet's socket on the host; `None` for forwarded traffic.
    pub owner: Option<String>,
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("pfeval: {s:?} is not an IPv4 address: {e}"))
}

impl Packet {
    pub fn tcp(src: &str, dst: &str, dport: u16) -> Packet {
        Packet::new(src, dst, Proto::Tcp, Some(dport))
    }
    pub fn udp(src: &str, dst: &str, dport: u16) -> Packet {
        Packet::new(src, dst, Proto::Udp, Some(dport))
    }
    pub fn icmp(src: &str, dst: &str) -> Packet {
        Packet::new(src, dst, Proto::Icmp, None)
    }
    fn new(src: &str, dst: &str, proto: Proto, dport: Option<u16>) -> Packet {
        Packet {
            src: ip(src),
            dst: ip(dst),
            proto,
            dport,
            iface: None,
            dir: None,
            owner: None,
        }
    }
    /// The same packet, sent from a socket of `user` on the host.
    pub fn user(mut self, user: &str) -> Packet {
        self.owner = Some(user.to_string());
        self
    }
    /// The same packet, seen on interface `iface`.
    pub fn on(mut self, iface: &str) -> Packet {
        self.iface = Some(iface.to_string());
        self
    }
    /// The same packet, seen in direction `dir`.
    pub fn dir(mut self, dir: Dir) -> Packet {
        self.dir = Some(dir);
        self
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        };
        write!(f, "{proto} {} -> {}", self.src, self.dst)?;
        if let Some(p) = self.dport {
            write!(f, ":{p}")?;
        }
        if let Some(d) = self.dir {
            write!(f, " {}", if d == Dir::In { "in" } else { "out" })?;
        }
        if let Some(i) = &self.iface {
            write!(f, " on {i}")?;
        }
        if let Some(u) = &self.owner {
            write!(f, " user {u}")?;
        }
        Ok(())
    }
}

/// The decision for one packet and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// 1-based line of the deciding rule; `None` when no rule matched (default pass).
    pub line: Option<usize>,
    /// The deciding rule as written (after joining continuations), or "(default pass)".
    pub rule: String,
    /// Whether the deciding rule is `quick`. In an anchor, a quick match also ends the
    /// evaluation of the main ruleset, so rules after the anchor cannot change it; a
    /// non-quick decision or the default pass can be overridden there.
    pub quick: bool,
    /// The `rdr` rule that translated the packet before filtering (its line) and the
    /// destination address and port it got; `None` when no `rdr` rule matched.
    pub rdr: Option<(usize, Ipv4Addr, u16)>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = if self.action == Action::Pass {
            "pass"
        } else {
            "block"
        };
        if let Some((l, ip, port)) = self.rdr {
            write!(f, "redirected by line {l} to {ip}:{port}, then ")?;
        }
        match self.line {
            Some(l) => write!(f, "{a} by line {l}: {}", self.rule),
            None => write!(f, "{a}: {}", self.rule),
        }
    }
}

/// An IPv4 network: address with host bits cleared, and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: u32,
    len: u8,
}

impl Net {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }
    fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & Net::mask(self.len) == self.addr
    }
}

/// An address or CIDR word, or `None` if the word is not one.
fn parse_net(word: &str) -> Option<Net> {
    let (a, len) = match word.split_once('/') {
        Some((a, l)) => {
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let len: u8 = l.parse().ok()?;
            if len > 32 {
                return None;
            }
            (a, len)
        }
        None => (word, 32),
    };
    // Only the dotted quad: pf would also take "10.1/16" or hostnames; refuse those.
    if a.split('.').count() != 4 {
        return None;
    }
    let a: Ipv4Addr = a.parse().ok()?;
    Some(Net {
        addr: u32::from(a) & Net::mask(len),
        len,
    })
}

#[derive(Debug, Clone)]
struct TableEntry {
    negated: bool,
    net: Net,
}

#[derive(Debug, Clone)]
struct Table {
    entries: Vec<TableEntry>,
}

impl Table {
    /// PF semantics: the longest matching prefix decides; a negated one means "no".
    fn contains(&self, a: Ipv4Addr) -> bool {
        self.entries
            .iter()
            .filter(|e| e.net.contains(a))
            .max_by_key(|e| (e.net.len, e.negated))
            .is_some_and(|e| !e.negated)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrKind {
    Any,
    Net(Net),
    Table(String),
    /// `(IF)`: the interface's own address (only in an `rdr` rule's destination).
    Iface(String),
    /// An IPv6 address (only in an `inet6` filter rule, which never matches here).
    V6(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Addr {
    negated: bool,
    kind: AddrKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub line: usize,
    pub text: String,
    action: Action,
    dir: Option<Dir>,
    quick: bool,
    iface: Option<String>,
    /// An `inet6` rule: it never matches an IPv4 packet.
    inet6: bool,
    protos: Option<Vec<Proto>>,
    from: Addr,
    to: Addr,
    ports: Option<Vec<u16>>,
    users: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    pub line: usize,
    pub text: String,
    iface: Option<String>,
    protos: Option<Vec<Proto>>,
    from: Addr,
    to: Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdrRule {
    pub line: usize,
    pub text: String,
    iface: String,
    protos: Vec<Proto>,
    from: Addr,
    to: Addr,
    ports: Vec<u16>,
    target: Ipv4Addr,
    target_port: u16,
}

/// A parsed ruleset.
#[derive(Debug, Clone)]
pub struct Ruleset {
    macros: BTreeMap<String, String>,
    tables: BTreeMap<String, Table>,
    pub rules: Vec<FilterRule>,
    pub nat: Vec<NatRule>,
    pub rdr: Vec<RdrRule>,
    /// Interface addresses the test declared, for `(IF)` in rdr rules.
    iface_addrs: BTreeMap<String, Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Table(String),
    LBrace,
    RBrace,
    Comma,
    Bang,
    LParen,
    RParen,
    Eq,
    Arrow,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "{w}"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Table(t) => write!(f, "<{t}>"),
            Tok::LBrace => write!(f, "{{"),
            Tok::RBrace => write!(f, "}}"),
            Tok::Comma => write!(f, ","),
            Tok::Bang => write!(f, "!"),
            Tok::LParen => write!(f, "("),
            Tok::RParen => write!(f, ")"),
            Tok::Eq => write!(f, "="),
            Tok::Arrow => write!(f, "->"),
        }
    }
}

/// A statement being parsed: its tokens, a cursor, and where it came from.
struct Stmt<'a> {
    toks: Vec<Tok>,
    pos: usize,
    line: usize,
    text: &'a str,
}

impl Stmt<'_> {
    fn fail(&self, why: impl fmt::Display) -> ! {
        panic!(
            "pfeval: line {}: {why}\n  in: {}\n  (pfeval understands only the pf.conf \
             subset warden renders; extend tests/support/pfeval.rs for new rule shapes)",
            self.line, self.text
        )
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }
    /// Consume the keyword `w` if it comes next.
    fn eat(&mut self, w: &str) -> bool {
        if self.peek_word(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, want: &Tok, what: &str) {
        match self.next() {
            Some(t) if &t == want => {}
            Some(t) => self.fail(format!("expected {what}, found {t:?}")),
            None => self.fail(format!("expected {what}, found the end of the line")),
        }
    }
    fn word(&mut self, what: &str) -> String {
        match self.next() {
            Some(Tok::Word(w)) => w,
            Some(t) => self.fail(format!("expected {what}, found {t:?}")),
            None => self.fail(format!("expected {what}, found the end of the line")),
        }
    }
    fn end(&self) {
        if let Some(t) = self.peek() {
            self.fail(format!("unsupported syntax starting at {t:?}"));
        }
    }
}

/// Split one logical line into tokens, expanding `$macro` outside quotes.
fn tokenize(
    s: &str,
    macros: &BTreeMap<String, String>,
    line: usize,
    text: &str,
    depth: usize,
) -> Vec<Tok> {
    let fail = |why: String| -> ! {
        panic!("pfeval: line {line}: {why}\n  in: {text}");
    };
    if depth > 16 {
        fail("macro expansion nests too deep".into());
    }
    let special = |c: char| "{},!()<>=\"#$".contains(c) || c.is_whitespace();
    let cs: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '#' => break,
            '{' | '}' | ',' | '!' | '(' | ')' | '=' => {
                toks.push(match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ',' => Tok::Comma,
                    '!' => Tok::Bang,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    _ => Tok::Eq,
                });
                i += 1;
            }
            '"' => {
                let close = cs[i + 1..]
                    .iter()
                    .position(|&c| c == '"')
                    .unwrap_or_else(|| fail("unterminated quoted string".into()));
                toks.push(Tok::Str(cs[i + 1..i + 1 + close].iter().collect()));
                i += close + 2;
            }
            '<' => {
                let close = cs[i + 1..]
                    .iter()
                    .position(|&c| c == '>')
                    .unwrap_or_else(|| fail("'<' without a closing '>'".into()));
                let name: String = cs[i + 1..i + 1 + close].iter().collect();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    fail(format!("<{name}> is not a table name pfeval knows"));
                }
                toks.push(Tok::Table(name));
                i += close + 2;
            }
            '>' => fail("unsupported operator '>'".into()),
            '$' => {
                let n = cs[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let name: String = cs[i + 1..i + 1 + n].iter().collect();
                if name.is_empty() {
                    fail("'$' without a macro name".into());
                }
                let value = macros
                    .get(&name)
                    .unwrap_or_else(|| fail(format!("macro ${name} is not defined")));
                toks.extend(tokenize(value, macros, line, text, depth + 1));
                i += n + 1;
            }
            '-' if cs.get(i + 1) == Some(&'>') => {
                toks.push(Tok::Arrow);
                i += 2;
            }
            _ => {
                let start = i;
                while i < cs.len()
                    && !special(cs[i])
                    && !(cs[i] == '-' && cs.get(i + 1) == Some(&'>'))
                {
                    i += 1;
                }
                toks.push(Tok::Word(cs[start..i].iter().collect()));
            }
        }
    }
    toks
}

/// Logical lines: `\`-continued lines joined, with the 1-based line each starts on.
fn logical_lines(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (n, raw) in src.lines().enumerate() {
        let (start, mut text) = cur.take().unwrap_or((n + 1, String::new()));
        if let Some(body) = raw.strip_suffix('\\') {
            text.push_str(body);
            text.push(' ');
            cur = Some((start, text));
        } else {
            text.push_str(raw);
            out.push((start, text));
        }
    }
    if let Some((start, text)) = cur {
        panic!("pfeval: line {start}: the file ends inside a '\\' continuation\n  in: {text}");
    }
    out
}

/// Run `f`, turning a panic into its message without printing it (the panic hook
/// stays quiet on this thread while `f` runs).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                prev(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "pfeval: evaluation failed".into())
    })
}

impl Ruleset {
    /// As [`Ruleset::parse`], with a rule shape outside the subset as an error.
    pub fn try_parse(src: &str) -> Result<Ruleset, String> {
        quietly(|| Ruleset::parse(src))
    }

    /// As [`Ruleset::eval`], with a packet the rules cannot judge as an error.
    pub fn try_eval(&self, p: &Packet) -> Result<Verdict, String> {
        quietly(|| self.eval(p))
    }

    /// Parse a ruleset, panicking on anything outside the supported subset.
    pub fn parse(src: &str) -> Ruleset {
        let mut rs = Ruleset {
            macros: BTreeMap::new(),
            tables: BTreeMap::new(),
            rules: Vec::new(),
            nat: Vec::new(),
            rdr: Vec::new(),
            iface_addrs: BTreeMap::new(),
        };
        for (line, text) in logical_lines(src) {
            let toks = tokenize(&text, &rs.macros, line, &text, 0);
            if toks.is_empty() {
                continue;
            }
            let mut st = Stmt {
                toks,
                pos: 0,
                line,
                text: text.trim(),
            };
            match st.toks.as_slice() {
                [Tok::Word(_), Tok::Eq, ..] => rs.parse_macro(&mut st, &text),
                [Tok::Word(w), ..] if w == "table" => rs.parse_table(&mut st),
                [Tok::Word(w), ..] if w == "nat" => rs.parse_nat(&mut st),
                [Tok::Word(w), ..] if w == "rdr" => rs.parse_rdr(&mut st),
                [Tok::Word(w), ..] if w == "pass" || w == "block" => rs.parse_filter(&mut st),
                [t, ..] => st.fail(format!("unsupported statement starting with {t:?}")),
                [] => unreachable!(),
            }
        }
        rs
    }

    /// `name = "value"` or `name = word`. The value is taken from the raw text, as
    /// written; it is tokenized (and its own `$macros` expanded) where it is used.
    fn parse_macro(&mut self, st: &mut Stmt, text: &str) {
        let name = st.word("a macro name");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            st.fail(format!("{name:?} is not a macro name"));
        }
        st.expect(&Tok::Eq, "'='");
        let rhs = text.split_once('=').expect("tokenized an '='").1.trim();
        let value = if let Some(q) = rhs.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, rest)) if rest.trim().is_empty() || rest.trim().starts_with('#') => {
                    v.to_string()
                }
                _ => st.fail("a macro value must be one quoted string or one word"),
            }
        } else {
            match st.toks[st.pos..] {
                [Tok::Word(ref w)] if !rhs.contains('$') => w.clone(),
                _ => st.fail("a macro value must be one quoted string or one word"),
            }
        };
        self.macros.insert(name, value);
    }

    fn parse_table(&mut self, st: &mut Stmt) {
        st.eat("table");
        let name = match st.next() {
            Some(Tok::Table(n)) => n,
            _ => st.fail("expected <name> after 'table'"),
        };
        if self.tables.contains_key(&name) {
            st.fail(format!("table <{name}> is defined twice"));
        }
        while st.eat("const") || st.eat("persist") {}
        st.expect(&Tok::LBrace, "'{' opening the table's addresses");
        let mut entries = Vec::new();
        loop {
            match st.next() {
                Some(Tok::RBrace) => break,
                Some(Tok::Comma) => continue,
                Some(Tok::Bang) => {
                    let w = st.word("an address after '!'");
                    let net = parse_net(&w).unwrap_or_else(|| {
                        st.fail(format!("{w:?} is not an IPv4 address or CIDR"))
                    });
                    entries.push(TableEntry { negated: true, net });
                }
                Some(Tok::Word(w)) => {
                    let net = parse_net(&w).unwrap_or_else(|| {
                        st.fail(format!("{w:?} is not an IPv4 address or CIDR"))
                    });
                    entries.push(TableEntry {
                        negated: false,
                        net,
                    });
                }
                Some(t) => st.fail(format!("unsupported table entry {t:?}")),
                None => st.fail("table without a closing '}'"),
            }
        }
        st.end();
        self.tables.insert(name, Table { entries });
    }

    fn parse_addr(&self, st: &mut Stmt) -> Addr {
        self.parse_addr_in(st, false)
    }

    /// An address; `(IF)` only where `iface_ok` (an rdr rule's destination).
    fn parse_addr_in(&self, st: &mut Stmt, iface_ok: bool) -> Addr {
        let negated = matches!(st.peek(), Some(Tok::Bang));
        if negated {
            st.next();
        }
        let kind = match st.next() {
            Some(Tok::LParen) if iface_ok && !negated => {
                let w = st.word("an interface name");
                st.expect(&Tok::RParen, "')'");
                AddrKind::Iface(w)
            }
            Some(Tok::Word(w)) if w == "any" => {
                if negated {
                    st.fail("'! any' matches nothing; pfeval refuses it");
                }
                AddrKind::Any
            }
            Some(Tok::Word(w)) => match parse_net(&w) {
                Some(n) => AddrKind::Net(n),
                None if w.contains(':') && w.parse::<std::net::Ipv6Addr>().is_ok() => {
                    AddrKind::V6(w)
                }
                None => st.fail(format!("{w:?} is not an address pfeval understands")),
            },
            Some(Tok::Table(t)) => {
                if !self.tables.contains_key(&t) {
                    st.fail(format!("table <{t}> is not defined above this rule"));
                }
                AddrKind::Table(t)
            }
            Some(t) => st.fail(format!("unsupported address {t:?}")),
            None => st.fail("expected an address, found the end of the line"),
        };
        Addr { negated, kind }
    }

    fn parse_protos(st: &mut Stmt) -> Option<Vec<Proto>> {
        if !st.eat("proto") {
            return None;
        }
        let one = |st: &mut Stmt, w: String| match w.as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            _ => st.fail(format!("unsupported protocol {w:?}")),
        };
        if matches!(st.peek(), Some(Tok::LBrace)) {
            st.next();
            let mut v = Vec::new();
            loop {
                match st.next() {
                    Some(Tok::RBrace) if !v.is_empty() => break,
                    Some(Tok::Comma) => continue,
                    Some(Tok::Word(w)) => v.push(one(st, w)),
                    _ => st.fail("malformed protocol list"),
                }
            }
            Some(v)
        } else {
            let w = st.word("a protocol");
            Some(vec![one(st, w)])
        }
    }

    fn parse_ports(st: &mut Stmt) -> Vec<u16> {
        let num = |st: &mut Stmt, w: String| -> u16 {
            match w.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => st.fail(format!("{w:?} is not a port number pfeval understands")),
            }
        };
        match st.next() {
            Some(Tok::Eq) => {
                let w = st.word("a port number");
                vec![num(st, w)]
            }
            Some(Tok::Word(w)) => vec![num(st, w)],
            Some(Tok::LBrace) => {
                let mut v = Vec::new();
                loop {
                    match st.next() {
                        Some(Tok::RBrace) if !v.is_empty() => break,
                        Some(Tok::Comma) => continue,
                        Some(Tok::Word(w)) => v.push(num(st, w)),
                        _ => st.fail("malformed port list (only plain numbers are understood)"),
                    }
                }
                v
            }
            _ => st.fail("unsupported port specification (only N, = N and { N M })"),
        }
    }

    /// `[on IF] [inet] [proto P]`, shared by nat and filter rules.
    fn parse_on_af_proto(st: &mut Stmt) -> (Option<String>, Option<Vec<Proto>>) {
        let (iface, _, protos) = Self::parse_on_af6_proto(st, false);
        (iface, protos)
    }

    /// `[on IF] [inet | inet6] [proto P]`; `inet6` only where `inet6_ok` (a filter
    /// rule), and such a rule never matches the IPv4 packets evaluated here.
    fn parse_on_af6_proto(
        st: &mut Stmt,
        inet6_ok: bool,
    ) -> (Option<String>, bool, Option<Vec<Proto>>) {
        let iface = if st.eat("on") {
            if !matches!(st.peek(), Some(Tok::Word(_))) {
                st.fail("only 'on IFNAME' is understood (no lists, groups or negation)");
            }
            let w = st.word("an interface name");
            if !w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                st.fail(format!("{w:?} is not an interface name"));
            }
            Some(w)
        } else {
            None
        };
        let inet6 = inet6_ok && st.eat("inet6");
        if st.peek_word("inet6") {
            st.fail("inet6 is not modelled (packets are IPv4)");
        }
        st.eat("inet");
        (iface, inet6, Self::parse_protos(st))
    }

    /// `all | [from ADDR] [to ADDR [port ..]]`; a source port is refused.
    fn parse_hosts(&self, st: &mut Stmt) -> (Addr, Addr, Option<Vec<u16>>) {
        let any = Addr {
            negated: false,
            kind: AddrKind::Any,
        };
        if st.eat("all") {
            return (any.clone(), any, None);
        }
        let from = if st.eat("from") {
            let a = self.parse_addr(st);
            if st.peek_word("port") {
                st.fail("source ports are not modelled (packets have no source port)");
            }
            a
        } else {
            any.clone()
        };
        let (to, ports) = if st.eat("to") {
            let a = self.parse_addr(st);
            let p = if st.eat("port") {
                Some(Self::parse_ports(st))
            } else {
                None
            };
            (a, p)
        } else {
            (any, None)
        };
        (from, to, ports)
    }

    fn parse_nat(&mut self, st: &mut Stmt) {
        st.eat("nat");
        if st.peek_word("pass") {
            st.fail("'nat pass' is not modelled");
        }
        let (iface, protos) = Self::parse_on_af_proto(st);
        let (from, to, ports) = self.parse_hosts(st);
        if ports.is_some() {
            st.fail("ports on nat rules are not modelled");
        }
        st.expect(&Tok::Arrow, "'->' and the translation address");
        match st.next() {
            Some(Tok::LParen) => {
                st.word("an interface name");
                st.expect(&Tok::RParen, "')'");
            }
            Some(Tok::Word(w)) if parse_net(&w).is_some() => {}
            Some(t) => st.fail(format!("unsupported nat translation address {t:?}")),
            None => st.fail("expected the translation address after '->'"),
        }
        st.end();
        self.nat.push(NatRule {
            line: st.line,
            text: st.text.to_string(),
            iface,
            protos,
            from,
            to,
        });
    }

    /// `rdr on IF [inet] proto P from X to Y port N -> ADDR port M`.
    fn parse_rdr(&mut self, st: &mut Stmt) {
        st.eat("rdr");
        if st.peek_word("pass") {
            st.fail("'rdr pass' is not modelled (warden writes the pass rule itself)");
        }
        let (iface, protos) = Self::parse_on_af_proto(st);
        let Some(iface) = iface else {
            st.fail("an rdr rule without 'on IF' is not modelled")
        };
        let protos = match protos {
            Some(ps) if ps.iter().all(|p| *p != Proto::Icmp) => ps,
            _ => st.fail("an rdr rule needs 'proto tcp' or 'proto udp'"),
        };
        if !st.eat("from") {
            st.fail("expected 'from'");
        }
        let from = self.parse_addr(st);
        if !st.eat("to") {
            st.fail("expected 'to'");
        }
        let to = self.parse_addr_in(st, true);
        if !st.eat("port") {
            st.fail("an rdr rule without a destination port is not modelled");
        }
        let ports = Self::parse_ports(st);
        st.expect(&Tok::Arrow, "'->' and the redirect address");
        let w = st.word("the redirect address");
        let target = match parse_net(&w) {
            Some(n) if n.len == 32 => Ipv4Addr::from(n.addr),
            _ => st.fail(format!("{w:?} is not one IPv4 address")),
        };
        if !st.eat("port") {
            st.fail("an rdr rule without a redirect port is not modelled");
        }
        let tp = Self::parse_ports(st);
        let [target_port] = tp.as_slice() else {
            st.fail("one redirect port only")
        };
        st.end();
        self.rdr.push(RdrRule {
            line: st.line,
            text: st.text.to_string(),
            iface,
            protos,
            from,
            to,
            ports,
            target,
            target_port: *target_port,
        });
    }

    /// Declare the address of interface `name`, which `(name)` stands for.
    pub fn iface_addr(mut self, name: &str, addr: &str) -> Ruleset {
        self.iface_addrs.insert(name.to_string(), ip(addr));
        self
    }

    /// The packet after PF's translation step: the first matching rdr rule's
    /// destination, for a packet coming in on the rule's interface.
    fn redirect(&self, p: &Packet) -> Option<(usize, Packet)> {
        for r in &self.rdr {
            if !r.protos.contains(&p.proto)
                || !p.dport.is_some_and(|d| r.ports.contains(&d))
                || !self.addr_matches(&r.from, p.src)
                || !self.addr_matches(&r.to, p.dst)
            {
                continue;
            }
            let (Some(dir), Some(iface)) = (p.dir, p.iface.as_ref()) else {
                panic!(
                    "pfeval: rdr rule on line {} ({}) could match {p}; say where it is \
                     seen with .dir() and .on()",
                    r.line, r.text
                );
            };
            if dir != Dir::In || *iface != r.iface {
                continue;
            }
            let mut q = p.clone();
            q.dst = r.target;
            q.dport = Some(r.target_port);
            return Some((r.line, q));
        }
        None
    }

    fn parse_filter(&mut self, st: &mut Stmt) {
        let action = match st.word("pass or block").as_str() {
            "pass" => Action::Pass,
            _ => {
                // `block`, `block drop` and `block return` all decide "block".
                let _ = st.eat("drop") || st.eat("return");
                Action::Block
            }
        };
        let dir = if st.eat("in") {
            Some(Dir::In)
        } else if st.eat("out") {
            Some(Dir::Out)
        } else {
            None
        };
        // `log` or `log (all, user, to pflogN)`: what pflog records, not what
        // the rule decides.
        if st.eat("log") && st.peek() == Some(&Tok::LParen) {
            while let Some(t) = st.next() {
                if t == Tok::RParen {
                    break;
                }
            }
        }
        let quick = st.eat("quick");
        let (iface, inet6, protos) = Self::parse_on_af6_proto(st, true);
        let (from, to, ports) = self.parse_hosts(st);
        let v6 = |a: &Addr| matches!(a.kind, AddrKind::V6(_));
        if !inet6 && (v6(&from) || v6(&to)) {
            st.fail("an IPv6 address outside an inet6 rule");
        }
        if ports.is_some() {
            match &protos {
                Some(ps) if ps.iter().all(|p| *p != Proto::Icmp) => {}
                _ => st.fail("'port' needs 'proto tcp' or 'proto udp' (pfctl rejects it)"),
            }
        }
        let mut users = None;
        loop {
            if st.eat("keep") {
                if !st.eat("state") {
                    st.fail("expected 'state' after 'keep'");
                }
            } else if st.eat("user") {
                users = Some(Self::parse_users(st));
                match &protos {
                    Some(ps) if ps.iter().all(|p| *p != Proto::Icmp) => {}
                    _ => st.fail("'user' needs 'proto tcp' or 'proto udp' (pfctl rejects it)"),
                }
            } else {
                break;
            }
        }
        st.end();
        self.rules.push(FilterRule {
            line: st.line,
            text: st.text.to_string(),
            action,
            dir,
            quick,
            iface,
            inet6,
            protos,
            from,
            to,
            ports,
            users,
        });
    }

    /// `NAME` or `{ a, b }`; `!=` and other operators are refused.
    fn parse_users(st: &mut Stmt) -> Vec<String> {
        let name = |st: &mut Stmt, w: String| {
            if !w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                st.fail(format!("{w:?} is not a user name pfeval understands"));
            }
            w
        };
        match st.next() {
            Some(Tok::Word(w)) => vec![name(st, w)],
            Some(Tok::LBrace) => {
                let mut v = Vec::new();
                loop {
                    match st.next() {
                        Some(Tok::RBrace) if !v.is_empty() => break,
                        Some(Tok::Comma) => continue,
                        Some(Tok::Word(w)) => v.push(name(st, w)),
                        Some(Tok::Bang) => st.fail(
                            "negated users in a list: pf.conf(5) warns that { != a, != b } \
                             matches everything",
                        ),
                        _ => st.fail("malformed user list"),
                    }
                }
                v
            }
            _ => st.fail("unsupported user specification (only NAME and { a, b })"),
        }
    }

    fn addr_matches(&self, a: &Addr, ip: Ipv4Addr) -> bool {
        let hit = match &a.kind {
            AddrKind::Any => true,
            AddrKind::Net(n) => n.contains(ip),
            AddrKind::Table(t) => self.tables[t].contains(ip),
            AddrKind::V6(_) => false,
            AddrKind::Iface(i) => {
                let own = self.iface_addrs.get(i).unwrap_or_else(|| {
                    panic!(
                        "pfeval: a rule names ({i})'s address; declare it with \
                         Ruleset::iface_addr(\"{i}\", ADDR)"
                    )
                });
                *own == ip
            }
        };
        hit != a.negated
    }

    fn rule_matches(&self, r: &FilterRule, p: &Packet) -> bool {
        if r.inet6 {
            return false;
        }
        if let Some(d) = r.dir {
            let pd = p.dir.unwrap_or_else(|| {
                panic!(
                    "pfeval: line {} restricts the direction ({}); give the packet \
                     {p} a direction with .dir()",
                    r.line, r.text
                )
            });
            if pd != d {
                return false;
            }
        }
        if let Some(i) = &r.iface {
            let pi = p.iface.as_ref().unwrap_or_else(|| {
                panic!(
                    "pfeval: line {} restricts the interface ({}); give the packet \
                     {p} an interface with .on()",
                    r.line, r.text
                )
            });
            if pi != i {
                return false;
            }
        }
        if let Some(ps) = &r.protos {
            if !ps.contains(&p.proto) {
                return false;
            }
        }
        if !self.addr_matches(&r.from, p.src) || !self.addr_matches(&r.to, p.dst) {
            return false;
        }
        if let Some(ports) = &r.ports {
            match p.dport {
                Some(d) if ports.contains(&d) => {}
                _ => return false,
            }
        }
        if let Some(users) = &r.users {
            match &p.owner {
                Some(u) if users.contains(u) => {}
                _ => return false,
            }
        }
        true
    }

    /// PF's decision for `p`: the last matching rule, or the first matching `quick`
    /// rule; pass when nothing matches.
    pub fn eval(&self, p: &Packet) -> Verdict {
        assert_eq!(
            matches!(p.proto, Proto::Tcp | Proto::Udp),
            p.dport.is_some(),
            "pfeval: tcp and udp packets need a destination port, icmp packets none: {p}"
        );
        let redirected = self.redirect(p);
        let rdr = redirected
            .as_ref()
            .map(|(line, q)| (*line, q.dst, q.dport.expect("tcp or udp")));
        let p = redirected.as_ref().map_or(p, |(_, q)| q);
        let mut last: Option<&FilterRule> = None;
        for r in &self.rules {
            if self.rule_matches(r, p) {
                last = Some(r);
                if r.quick {
                    break;
                }
            }
        }
        match last {
            Some(r) => Verdict {
                action: r.action,
                line: Some(r.line),
                rule: r.text.clone(),
                quick: r.quick,
                rdr,
            },
            None => Verdict {
                action: Action::Pass,
                line: None,
                rule: "(default pass)".into(),
                quick: false,
                rdr,
            },
        }
    }

    /// The value of a macro, as defined.
    pub fn macro_value(&self, name: &str) -> Option<&str> {
        self.macros.get(name).map(String::as_str)
    }

    /// Whether `ip` is in table `name` (panics if there is no such table).
    pub fn table_contains(&self, name: &str, ip: Ipv4Addr) -> bool {
        self.tables
            .get(name)
            .unwrap_or_else(|| panic!("pfeval: no table <{name}>"))
            .contains(ip)
    }
}
