//! Named license pools: the model language a license administrator uploads to split feature
//! counts into named pools, and the rules of access that say which requester draws from which pool.
//!
//! ```text
//! model "sites" {
//!   partitions {
//!     partition "pune" { "solver" 2.0 3 }          // 3 seats of solver 2.0 or later
//!     partition "kassel" { "solver" 2.0 25% }      // a quarter of them, rounded down
//!   }
//!   rules {
//!     hostid "ethernet=0050569a3b01" => "pune"     // first match wins
//!     alias "kassel-*" and user "build" => "kassel"
//!     any => default
//!   }
//! }
//! ```
//!
//! Three steps, each its own type:
//!
//! 1. [`Model::parse`] reads the text into a [`Model`] or fails with a [`ModelError`] that names
//!    the line and column, what was expected and what was found.
//! 2. [`Model::resolve`] checks the model against the server's feature records (every pooled
//!    feature exists, is counted, and is not over-allocated) and turns percentages into counts,
//!    giving a [`ResolvedModel`] or a [`ResolveError`].
//! 3. [`ResolvedModel::pool_for`] says which pool an [`Identity`] (hostid, user, alias,
//!    attributes) draws from; `None` is the default pool. It allocates nothing.
//!
//! `docs/model-language.md` describes the language for administrators.

use std::fmt;
use std::str::FromStr;

use crate::feature::{valid_feature_name, Count, Feature};
use crate::hostid::{HostId, HostIdError, HostIdKind};
use crate::version::{Version, VersionError};

/// A place in the model text: line and column, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a model text did not parse. Every variant carries the [`Position`] it refers to (`at`),
/// and its message starts with `line L, column C: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Something other than what the grammar allows at this place.
    #[error("{at}: expected {expected}, found {found}")]
    Syntax {
        /// Where.
        at: Position,
        /// What the grammar allows here.
        expected: &'static str,
        /// What was there, quoted, or `the end of the input`.
        found: String,
    },
    /// A word where a keyword belongs that is no keyword of the language (a misspelling).
    #[error("{at}: expected {expected}, found \"{found}\", which is not a keyword of the model language")]
    UnknownKeyword {
        /// Where.
        at: Position,
        /// The keywords allowed here.
        expected: &'static str,
        /// The word.
        found: String,
    },
    /// A character that starts no token (only `{ } = => // " `, words and numbers do).
    #[error(
        "{at}: unexpected character '{ch}' (strings go in double quotes, comments start with //)"
    )]
    UnexpectedCharacter {
        /// Where.
        at: Position,
        /// The character.
        ch: char,
    },
    /// A string whose closing quote is missing before the end of its line.
    #[error("{at}: this string is not closed: add a \" before the end of the line")]
    UnterminatedString {
        /// Where the string starts (its opening quote).
        at: Position,
    },
    /// A backslash followed by something other than `"` or `\`.
    #[error("{at}: '\\{found}' is not an escape: inside a string write \\\" for a quote and \\\\ for a backslash")]
    InvalidEscape {
        /// Where the backslash is.
        at: Position,
        /// The character after the backslash.
        found: char,
    },
    /// An empty string where a name or a value is needed.
    #[error("{at}: the {what} is empty: give it at least one character")]
    EmptyString {
        /// Where.
        at: Position,
        /// What it names: `model name`, `pool name`, `hostid`, `user`, `alias`, `attribute name`
        /// or `attribute value`.
        what: &'static str,
    },
    /// A pool named `default` (in any case), which would be mistaken for the default pool.
    #[error("{at}: a pool cannot be named \"{name}\": the default pool is written `default` in rules; choose another name")]
    ReservedPoolName {
        /// Where.
        at: Position,
        /// The name.
        name: String,
    },
    /// A feature name that no feature record could have.
    #[error("{at}: \"{name}\" is not a feature name: use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit")]
    InvalidFeatureName {
        /// Where.
        at: Position,
        /// The name.
        name: String,
    },
    /// A minimum version that is not `a.b…`.
    #[error("{at}: expected a minimum version like 2.0, found \"{found}\": {reason}")]
    InvalidVersion {
        /// Where.
        at: Position,
        /// The text.
        found: String,
        /// Why it is not a version.
        reason: VersionError,
    },
    /// A percentage above 100.
    #[error("{at}: a pool can take at most 100% of a feature, found {found}")]
    PercentOver100 {
        /// Where.
        at: Position,
        /// The text, e.g. `150%`.
        found: String,
    },
    /// A count or percentage of zero, which would allocate nothing.
    #[error("{at}: a count of {found} allocates nothing: give a positive count or percentage, or leave the line out")]
    ZeroCount {
        /// Where.
        at: Position,
        /// The text, `0` or `0%`.
        found: String,
    },
    /// A count above 4294967295.
    #[error("{at}: the count {found} is too large (at most 4294967295)")]
    CountTooLarge {
        /// Where.
        at: Position,
        /// The text.
        found: String,
    },
    /// A `hostid` condition that is not `KIND=VALUE` (or `KIND=PREFIX*`).
    #[error("{at}: \"{found}\" is not a hostid: {reason}")]
    InvalidHostId {
        /// Where.
        at: Position,
        /// The text.
        found: String,
        /// Why.
        reason: HostIdError,
    },
    /// A rule sends requesters to a pool that no partition defines.
    #[error("{at}: no partition defines the pool \"{pool}\" (defined: {})", list_or_none(.defined))]
    UndefinedPool {
        /// Where the rule names it.
        at: Position,
        /// The name.
        pool: String,
        /// The pools the model defines, in order.
        defined: Vec<String>,
    },
    /// Something after the model's closing `}`.
    #[error("{at}: expected the end of the input after the model's closing }}, found {found}")]
    TrailingInput {
        /// Where.
        at: Position,
        /// What was there.
        found: String,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ModelError {
    /// Where in the text the error is.
    pub fn position(&self) -> Position {
        match self {
            ModelError::Syntax { at, .. }
            | ModelError::UnknownKeyword { at, .. }
            | ModelError::UnexpectedCharacter { at, .. }
            | ModelError::UnterminatedString { at }
            | ModelError::InvalidEscape { at, .. }
            | ModelError::EmptyString { at, .. }
            | ModelError::ReservedPoolName { at, .. }
            | ModelError::InvalidFeatureName { at, .. }
            | ModelError::InvalidVersion { at, .. }
            | ModelError::PercentOver100 { at, .. }
            | ModelError::ZeroCount { at, .. }
            | ModelError::CountTooLarge { at, .. }
            | ModelError::InvalidHostId { at, .. }
            | ModelError::UndefinedPool { at, .. }
            | ModelError::TrailingInput { at, .. } => *at,
        }
    }
}

/// How much of a feature a pool entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    /// This many seats (1 to 4294967295).
    Seats(u32),
    /// This percentage (1 to 100) of the seats of the matching records, rounded down.
    Percent(u8),
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Seats(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One line of a partition: a feature, the lowest version of its records that count, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    feature: String,
    min_version: Version,
    amount: Amount,
    at: Position,
}

impl Entry {
    /// The feature name.
    pub fn feature(&self) -> &str {
        &self.feature
    }
    /// Records of this version or later count towards the entry.
    pub fn min_version(&self) -> &Version {
        &self.min_version
    }
    /// A count or a percentage.
    pub fn amount(&self) -> Amount {
        self.amount
    }
    /// Where the entry starts in the text.
    pub fn position(&self) -> Position {
        self.at
    }
}

/// One `partition "NAME" { … }` block as written. A name may appear in several blocks: their
/// entries add up (see [`ResolvedModel::pools`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    name: String,
    entries: Vec<Entry>,
    at: Position,
}

impl Partition {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// Where the block starts (its `partition` keyword).
    pub fn position(&self) -> Position {
        self.at
    }
}

/// A string a condition compares with: exact, or (written with a trailing `*`) a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// The whole value must be this.
    Exact(String),
    /// The value must start with this (written `"this*"`; `"*"` matches every value).
    Prefix(String),
}

impl Pattern {
    /// The pattern a string denotes: a trailing `*` makes it a prefix.
    pub fn from_text(text: &str) -> Pattern {
        match text.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(text.to_string()),
        }
    }

    /// Whether `value` matches (case-sensitive; no allocation).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(s) => value == s,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }

    fn text(&self) -> String {
        match self {
            Pattern::Exact(s) => s.clone(),
            Pattern::Prefix(p) => format!("{p}*"),
        }
    }
}

impl fmt::Display for Pattern {
    /// The pattern as a quoted model string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, &self.text())
    }
}

/// One condition of a rule of access.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The requester's hostid (`KIND=VALUE`, normalised as [`HostId`] does, so that
    /// `ethernet=00:50:56:9A:3B:01` and `ethernet=0050569a3b01` are one pattern).
    HostId(Pattern),
    /// The user the request names.
    User(Pattern),
    /// The device alias the request names.
    Alias(Pattern),
    /// An attribute the client sends: its name exactly, its value by pattern.
    Attribute {
        /// The attribute's name.
        name: String,
        /// The value's pattern.
        value: Pattern,
    },
}

impl Condition {
    /// Whether the identity meets the condition.
    pub fn matches(&self, who: &Identity<'_>) -> bool {
        match self {
            Condition::HostId(p) => p.matches(who.hostid),
            Condition::User(p) => who.user.is_some_and(|u| p.matches(u)),
            Condition::Alias(p) => who.alias.is_some_and(|a| p.matches(a)),
            Condition::Attribute { name, value } => who
                .attributes
                .iter()
                .any(|(k, v)| k == name && value.matches(v)),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::HostId(p) => write!(f, "hostid {p}"),
            Condition::User(p) => write!(f, "user {p}"),
            Condition::Alias(p) => write!(f, "alias {p}"),
            Condition::Attribute { name, value } => {
                f.write_str("attribute ")?;
                write_quoted(f, name)?;
                write!(f, " = {value}")
            }
        }
    }
}

/// When a rule applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum When {
    /// Always (`any`).
    Any,
    /// When every condition holds (`c1 and c2 …`, at least one).
    All(Vec<Condition>),
}

impl When {
    /// Whether the identity meets it.
    pub fn matches(&self, who: &Identity<'_>) -> bool {
        match self {
            When::Any => true,
            When::All(conditions) => conditions.iter().all(|c| c.matches(who)),
        }
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Any => f.write_str("any"),
            When::All(conditions) => {
                for (i, c) in conditions.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where a rule sends a requester.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The default pool (`default`).
    Default,
    /// A named pool.
    Pool(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Default => f.write_str("default"),
            Target::Pool(name) => write_quoted(f, name),
        }
    }
}

/// One rule of access: `CONDITIONS => TARGET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    when: When,
    target: Target,
    at: Position,
}

impl Rule {
    /// When it applies.
    pub fn when(&self) -> &When {
        &self.when
    }
    /// Where it sends the requester.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// Where the rule starts in the text.
    pub fn position(&self) -> Position {
        self.at
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} => {}", self.when, self.target)
    }
}

/// A parsed model definition, as written (a partition named twice is two [`Partition`]s here).
/// Only [`Model::parse`] makes one, so every model holds the language's rules: names are not
/// empty, counts and percentages are in range, every rule's pool is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    name: String,
    partitions: Vec<Partition>,
    rules: Option<Vec<Rule>>,
}

impl Model {
    /// Parses a model definition.
    pub fn parse(text: &str) -> Result<Model, ModelError> {
        Parser::new(text).model()
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partitions, in the order written.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The rules of access in order, or `None` when the model has no `rules` block.
    pub fn rules(&self) -> Option<&[Rule]> {
        self.rules.as_deref()
    }

    /// The model as text in the canonical layout (two-space indents, one entry or rule a line, no
    /// comments); it parses back to the same model.
    pub fn to_text(&self) -> String {
        self.to_string()
    }

    /// Checks the model against the server's feature records and resolves it; see the module
    /// documentation and `docs/model-language.md` ("How counts resolve").
    ///
    /// For each entry, the *matching records* are the records of the entry's feature name with a
    /// version at or above the entry's minimum version. An entry is refused when there are none
    /// ([`ResolveError::UnknownFeature`]) or when one of them is uncounted
    /// ([`ResolveError::Uncounted`]). A percentage takes `floor(total × percent / 100)` of the
    /// matching records' total count. Then, per feature and per minimum version `v` used for it,
    /// the entries with a minimum version of `v` or later may together take no more than the
    /// records of version `v` or later hold ([`ResolveError::OverAllocated`]). What no pool takes
    /// stays in the default pool.
    ///
    /// `records` are the records the server serves (typically those active now); a model that
    /// resolved against one set of records may be refused against another, so resolve again
    /// whenever the records change.
    pub fn resolve(&self, records: &[Feature]) -> Result<ResolvedModel, ResolveError> {
        resolve(self, records)
    }
}

impl FromStr for Model {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::parse(s)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("model ")?;
        write_quoted(f, &self.name)?;
        f.write_str(" {\n  partitions {\n")?;
        for p in &self.partitions {
            f.write_str("    partition ")?;
            write_quoted(f, &p.name)?;
            f.write_str(" {\n")?;
            for e in &p.entries {
                f.write_str("      ")?;
                write_quoted(f, &e.feature)?;
                writeln!(f, " {} {}", e.min_version, e.amount)?;
            }
            f.write_str("    }\n")?;
        }
        f.write_str("  }\n")?;
        if let Some(rules) = &self.rules {
            f.write_str("  rules {\n")?;
            for r in rules {
                writeln!(f, "    {r}")?;
            }
            f.write_str("  }\n")?;
        }
        f.write_str("}\n")
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

// ---------------------------------------------------------------------------------------------
// Lexer

const KEYWORDS: [&str; 11] = [
    "model",
    "partitions",
    "partition",
    "rules",
    "hostid",
    "user",
    "alias",
    "attribute",
    "and",
    "any",
    "default",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LBrace,
    RBrace,
    Equals,
    Arrow,
    Str(String),
    Word(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: Position,
}

impl Tok {
    /// How an error message names the token.
    fn describe(&self) -> String {
        match self {
            Tok::LBrace => "\"{\"".into(),
            Tok::RBrace => "\"}\"".into(),
            Tok::Equals => "\"=\"".into(),
            Tok::Arrow => "\"=>\"".into(),
            Tok::Str(s) => {
                let mut shown: String = s.chars().take(40).collect();
                if s.chars().count() > 40 {
                    shown.push('…');
                }
                format!("the string \"{shown}\"")
            }
            Tok::Word(w) => format!("\"{w}\""),
            Tok::Eof => "the end of the input".into(),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%')
}

struct Lexer<'s> {
    chars: std::iter::Peekable<std::str::Chars<'s>>,
    line: u32,
    column: u32,
}

impl<'s> Lexer<'s> {
    fn new(text: &'s str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
        }
    }

    fn pos(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    fn next_token(&mut self) -> Result<Token, ModelError> {
        loop {
            while self
                .chars
                .peek()
                .is_some_and(|c| c.is_whitespace() || *c == '\u{feff}')
            {
                self.bump();
            }
            if self.chars.peek() != Some(&'/') {
                break;
            }
            let at = self.pos();
            self.bump();
            if self.chars.peek() != Some(&'/') {
                return Err(ModelError::UnexpectedCharacter { at, ch: '/' });
            }
            while self.chars.peek().is_some_and(|c| *c != '\n') {
                self.bump();
            }
        }
        let at = self.pos();
        let Some(c) = self.bump() else {
            return Ok(Token { tok: Tok::Eof, at });
        };
        let tok = match c {
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '=' if self.chars.peek() == Some(&'>') => {
                self.bump();
                Tok::Arrow
            }
            '=' => Tok::Equals,
            '"' => Tok::Str(self.string_rest(at)?),
            c if is_word_char(c) => {
                let mut w = String::from(c);
                while let Some(&c) = self.chars.peek().filter(|c| is_word_char(**c)) {
                    w.push(c);
                    self.bump();
                }
                Tok::Word(w)
            }
            ch => return Err(ModelError::UnexpectedCharacter { at, ch }),
        };
        Ok(Token { tok, at })
    }

    /// The rest of a string whose opening quote (at `start`) was read.
    fn string_rest(&mut self, start: Position) -> Result<String, ModelError> {
        let mut s = String::new();
        loop {
            let at = self.pos();
            match self.bump() {
                None | Some('\n' | '\r') => {
                    return Err(ModelError::UnterminatedString { at: start })
                }
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    None | Some('\n' | '\r') => {
                        return Err(ModelError::UnterminatedString { at: start })
                    }
                    Some(found) => return Err(ModelError::InvalidEscape { at, found }),
                },
                Some(c) => s.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

const EXPECT_CONDITION: &str = "a condition (`hostid`, `user`, `alias` or `attribute`)";
const EXPECT_COUNT: &str = "a count (a number or a percentage like 25%)";

struct Parser<'s> {
    lexer: Lexer<'s>,
    peeked: Option<Token>,
}

impl<'s> Parser<'s> {
    fn new(text: &'s str) -> Self {
        Parser {
            lexer: Lexer::new(text),
            peeked: None,
        }
    }

    fn next(&mut self) -> Result<Token, ModelError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&Token, ModelError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(t))
    }

    fn peek_is_word(&mut self, word: &str) -> Result<bool, ModelError> {
        Ok(matches!(&self.peek()?.tok, Tok::Word(w) if w == word))
    }

    fn syntax(t: Token, expected: &'static str) -> ModelError {
        ModelError::Syntax {
            at: t.at,
            expected,
            found: t.tok.describe(),
        }
    }

    /// The error for a token found where one of some keywords belongs.
    fn not_keyword(t: Token, expected: &'static str) -> ModelError {
        match t.tok {
            Tok::Word(w)
                if !KEYWORDS.contains(&w.as_str())
                    && w.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                ModelError::UnknownKeyword {
                    at: t.at,
                    expected,
                    found: w,
                }
            }
            tok => Self::syntax(Token { tok, at: t.at }, expected),
        }
    }

    fn keyword(&mut self, kw: &str, expected: &'static str) -> Result<Position, ModelError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(w) if w == kw => Ok(t.at),
            _ => Err(Self::not_keyword(t, expected)),
        }
    }

    fn punct(&mut self, want: Tok, expected: &'static str) -> Result<Position, ModelError> {
        let t = self.next()?;
        if t.tok == want {
            Ok(t.at)
        } else {
            Err(Self::syntax(t, expected))
        }
    }

    fn string(&mut self, expected: &'static str) -> Result<(String, Position), ModelError> {
        let t = self.next()?;
        match t.tok {
            Tok::Str(s) => Ok((s, t.at)),
            tok => Err(Self::syntax(Token { tok, at: t.at }, expected)),
        }
    }

    fn nonempty_string(
        &mut self,
        expected: &'static str,
        what: &'static str,
    ) -> Result<(String, Position), ModelError> {
        let (s, at) = self.string(expected)?;
        if s.is_empty() {
            return Err(ModelError::EmptyString { at, what });
        }
        Ok((s, at))
    }

    fn model(mut self) -> Result<Model, ModelError> {
        self.keyword("model", "`model`")?;
        let (name, _) = self.nonempty_string("the model's name in double quotes", "model name")?;
        self.punct(Tok::LBrace, "\"{\"")?;
        self.keyword("partitions", "`partitions`")?;
        self.punct(Tok::LBrace, "\"{\"")?;
        let mut partitions = Vec::new();
        loop {
            let t = self.next()?;
            match &t.tok {
                Tok::RBrace => break,
                Tok::Word(w) if w == "partition" => partitions.push(self.partition(t.at)?),
                _ => return Err(Self::not_keyword(t, "`partition` or \"}\"")),
            }
        }
        let rules = if self.peek_is_word("rules")? {
            self.next()?;
            Some(self.rules(&partitions)?)
        } else {
            None
        };
        let t = self.next()?;
        if t.tok != Tok::RBrace {
            return Err(if rules.is_some() {
                Self::syntax(t, "\"}\" (the end of the model)")
            } else {
                Self::not_keyword(t, "`rules` or \"}\" (the end of the model)")
            });
        }
        let t = self.next()?;
        if t.tok != Tok::Eof {
            return Err(ModelError::TrailingInput {
                at: t.at,
                found: t.tok.describe(),
            });
        }
        Ok(Model {
            name,
            partitions,
            rules,
        })
    }

    fn partition(&mut self, at: Position) -> Result<Partition, ModelError> {
        let (name, name_at) =
            self.nonempty_string("the pool's name in double quotes", "pool name")?;
        if name.eq_ignore_ascii_case("default") {
            return Err(ModelError::ReservedPoolName { at: name_at, name });
        }
        self.punct(Tok::LBrace, "\"{\"")?;
        let mut entries = Vec::new();
        loop {
            let t = self.next()?;
            match t.tok {
                Tok::RBrace => break,
                Tok::Str(feature) => entries.push(self.entry(feature, t.at)?),
                tok => {
                    return Err(Self::syntax(
                        Token { tok, at: t.at },
                        "a feature name in double quotes, or \"}\"",
                    ))
                }
            }
        }
        Ok(Partition { name, entries, at })
    }

    fn entry(&mut self, feature: String, at: Position) -> Result<Entry, ModelError> {
        if !valid_feature_name(&feature) {
            return Err(ModelError::InvalidFeatureName { at, name: feature });
        }
        let t = self.next()?;
        let min_version = match t.tok {
            Tok::Word(w) => match Version::parse(&w) {
                Ok(v) => v,
                Err(reason) => {
                    return Err(ModelError::InvalidVersion {
                        at: t.at,
                        found: w,
                        reason,
                    })
                }
            },
            tok => {
                return Err(Self::syntax(
                    Token { tok, at: t.at },
                    "a minimum version like 2.0",
                ))
            }
        };
        let t = self.next()?;
        let amount = match t.tok {
            Tok::Word(w) => amount(&w, t.at)?,
            tok => return Err(Self::syntax(Token { tok, at: t.at }, EXPECT_COUNT)),
        };
        Ok(Entry {
            feature,
            min_version,
            amount,
            at,
        })
    }

    fn rules(&mut self, partitions: &[Partition]) -> Result<Vec<Rule>, ModelError> {
        self.punct(Tok::LBrace, "\"{\"")?;
        let mut rules = Vec::new();
        loop {
            let t = self.next()?;
            let at = t.at;
            let when = match &t.tok {
                Tok::RBrace => break,
                Tok::Word(w) if w == "any" => When::Any,
                _ => {
                    let mut conditions = vec![self.condition(
                        t,
                        "a rule (`hostid`, `user`, `alias`, `attribute` or `any`), or \"}\"",
                    )?];
                    while self.peek_is_word("and")? {
                        self.next()?;
                        let t = self.next()?;
                        conditions.push(self.condition(t, EXPECT_CONDITION)?);
                    }
                    When::All(conditions)
                }
            };
            self.punct(
                Tok::Arrow,
                match when {
                    When::Any => "\"=>\"",
                    When::All(_) => "`and` or \"=>\"",
                },
            )?;
            let t = self.next()?;
            let target = match t.tok {
                Tok::Word(w) if w == "default" => Target::Default,
                Tok::Str(pool) => {
                    if !partitions.iter().any(|p| p.name == pool) {
                        return Err(ModelError::UndefinedPool {
                            at: t.at,
                            pool,
                            defined: defined_pools(partitions),
                        });
                    }
                    Target::Pool(pool)
                }
                tok => {
                    return Err(Self::not_keyword(
                        Token { tok, at: t.at },
                        "a pool name in double quotes, or `default`",
                    ))
                }
            };
            rules.push(Rule { when, target, at });
        }
        Ok(rules)
    }

    fn condition(&mut self, t: Token, expected: &'static str) -> Result<Condition, ModelError> {
        let Tok::Word(w) = &t.tok else {
            return Err(Self::syntax(t, expected));
        };
        match w.as_str() {
            "hostid" => {
                let (text, at) = self.nonempty_string("a hostid in double quotes", "hostid")?;
                let pattern =
                    hostid_pattern(&text).map_err(|reason| ModelError::InvalidHostId {
                        at,
                        found: text.clone(),
                        reason,
                    })?;
                Ok(Condition::HostId(pattern))
            }
            "user" => {
                let (text, _) = self.nonempty_string("a user name in double quotes", "user")?;
                Ok(Condition::User(Pattern::from_text(&text)))
            }
            "alias" => {
                let (text, _) = self.nonempty_string("a device alias in double quotes", "alias")?;
                Ok(Condition::Alias(Pattern::from_text(&text)))
            }
            "attribute" => {
                let (name, _) =
                    self.nonempty_string("an attribute name in double quotes", "attribute name")?;
                self.punct(Tok::Equals, "\"=\"")?;
                let (value, _) =
                    self.nonempty_string("an attribute value in double quotes", "attribute value")?;
                Ok(Condition::Attribute {
                    name,
                    value: Pattern::from_text(&value),
                })
            }
            _ => Err(Self::not_keyword(t, expected)),
        }
    }
}

fn defined_pools(partitions: &[Partition]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in partitions {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    names
}

/// A count word: digits (seats) or digits followed by `%`.
fn amount(word: &str, at: Position) -> Result<Amount, ModelError> {
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let found = || word.to_string();
    if let Some(digits) = word.strip_suffix('%').filter(|d| digits_only(d)) {
        let significant = digits.trim_start_matches('0');
        return match significant.parse::<u8>() {
            _ if significant.is_empty() => Err(ModelError::ZeroCount { at, found: found() }),
            Ok(p) if p <= 100 => Ok(Amount::Percent(p)),
            _ => Err(ModelError::PercentOver100 { at, found: found() }),
        };
    }
    if digits_only(word) {
        return match word.parse::<u32>() {
            Ok(0) => Err(ModelError::ZeroCount { at, found: found() }),
            Ok(n) => Ok(Amount::Seats(n)),
            Err(_) => Err(ModelError::CountTooLarge { at, found: found() }),
        };
    }
    Err(ModelError::Syntax {
        at,
        expected: EXPECT_COUNT,
        found: format!("\"{word}\""),
    })
}

/// A hostid pattern, normalised as [`HostId`] normalises values so that it compares with the
/// normalised `KIND=VALUE` form of a requester's hostid.
fn hostid_pattern(text: &str) -> Result<Pattern, HostIdError> {
    let Some(prefix) = text.strip_suffix('*') else {
        return Ok(Pattern::Exact(text.parse::<HostId>()?.to_string()));
    };
    if prefix.is_empty() {
        return Ok(Pattern::Prefix(String::new()));
    }
    let (kind, value) = prefix.split_once('=').ok_or(HostIdError::MissingKind)?;
    let kind = HostIdKind::parse(kind).ok_or_else(|| HostIdError::UnknownKind(kind.into()))?;
    let value = match kind {
        HostIdKind::Ethernet | HostIdKind::MachineId | HostIdKind::Container => value
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect::<String>()
            .to_ascii_lowercase(),
        HostIdKind::VmUuid => value.to_ascii_lowercase(),
        _ => value.to_string(),
    };
    Ok(Pattern::Prefix(format!("{kind}={value}")))
}

// ---------------------------------------------------------------------------------------------
// Resolution against the feature records

/// Why a model cannot be used with the server's feature records. Each variant names the place
/// in the model text it refers to (`at`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No record of the entry's feature name, or none at or above its minimum version.
    #[error("{at}: pool \"{pool}\" takes \"{feature}\" {min_version} or later, but {}", unknown_reason(.feature, .versions))]
    UnknownFeature {
        /// Where the entry is.
        at: Position,
        /// The pool.
        pool: String,
        /// The feature name.
        feature: String,
        /// The entry's minimum version.
        min_version: Version,
        /// The versions the server's records of that name have (empty: no record of the name).
        versions: Vec<Version>,
    },
    /// A matching record is uncounted: an uncounted feature serves everyone and cannot be split.
    #[error("{at}: pool \"{pool}\" takes \"{feature}\" {min_version} or later, but the server holds it uncounted; an uncounted feature serves every requester and cannot be put in a pool: remove the entry")]
    Uncounted {
        /// Where the entry is.
        at: Position,
        /// The pool.
        pool: String,
        /// The feature name.
        feature: String,
        /// The entry's minimum version.
        min_version: Version,
    },
    /// The pools together take more seats of a feature than the records hold.
    #[error("{at}: the pools ask for {asked} seats of \"{feature}\" {min_version} or later ({}), but the server's records hold {exists}: lower the counts by {}", pool_list(.pools), .asked.saturating_sub(*.exists))]
    OverAllocated {
        /// The first entry of the feature counted in `asked`.
        at: Position,
        /// The feature name.
        feature: String,
        /// The minimum version at which the check failed.
        min_version: Version,
        /// The seats the entries with that minimum version or a later one ask for.
        asked: u64,
        /// The seats of the records of that version or later.
        exists: u64,
        /// Each pool's share of `asked`, in the order the pools are defined.
        pools: Vec<(String, u64)>,
    },
    /// A rule names a pool no partition defines (only possible for a model not made by
    /// [`Model::parse`], which refuses it as [`ModelError::UndefinedPool`]).
    #[error("{at}: no partition defines the pool \"{pool}\"")]
    UndefinedPool {
        /// Where the rule is.
        at: Position,
        /// The name.
        pool: String,
    },
}

fn unknown_reason(feature: &str, versions: &[Version]) -> String {
    if versions.is_empty() {
        return format!("the server holds no record of \"{feature}\"");
    }
    let list: Vec<String> = versions.iter().map(ToString::to_string).collect();
    format!(
        "the server's records of \"{feature}\" have only version {}",
        list.join(", ")
    )
}

fn pool_list(pools: &[(String, u64)]) -> String {
    pools
        .iter()
        .map(|(name, n)| format!("\"{name}\" {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ResolveError {
    /// Where in the model text the problem is.
    pub fn position(&self) -> Position {
        match self {
            ResolveError::UnknownFeature { at, .. }
            | ResolveError::Uncounted { at, .. }
            | ResolveError::OverAllocated { at, .. }
            | ResolveError::UndefinedPool { at, .. } => *at,
        }
    }
}

/// Something legal but probably not meant, found while resolving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelWarning {
    /// No rules (or an empty `rules` block): every requester draws from the default pool, so the
    /// pooled seats serve nobody.
    #[error("the model has no rules of access: nobody draws from the named pools, and their seats serve nobody")]
    NoRules,
    /// A pool no rule sends anyone to: its seats serve nobody.
    #[error("no rule sends anyone to pool \"{pool}\": its seats serve nobody")]
    PoolNotTargeted {
        /// The pool.
        pool: String,
    },
    /// A pool with no entries.
    #[error("{at}: pool \"{pool}\" holds no seats: whoever a rule sends there finds it empty")]
    EmptyPool {
        /// Its first partition block.
        at: Position,
        /// The pool.
        pool: String,
    },
    /// A rule after an `any` rule, which can never apply.
    #[error("{at}: this rule can never apply: the `any` rule at {any_at} comes first")]
    UnreachableRule {
        /// The rule.
        at: Position,
        /// The `any` rule before it.
        any_at: Position,
    },
    /// A percentage that rounds down to no seat.
    #[error("{at}: {percent}% of {total} seats of \"{feature}\" rounds down to 0: pool \"{pool}\" gets none from this entry")]
    PercentRoundsToZero {
        /// The entry.
        at: Position,
        /// The pool.
        pool: String,
        /// The feature.
        feature: String,
        /// The percentage.
        percent: u8,
        /// The matching records' total.
        total: u64,
    },
}

/// What a pool holds of one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The feature name.
    pub feature: String,
    /// Seats of records of this version or later.
    pub min_version: Version,
    /// The seats (every entry of this pool, feature and minimum version added up).
    pub count: u64,
}

/// A named pool with what it holds, every partition block of that name merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The name.
    pub name: String,
    /// Per feature and minimum version, in the order first written.
    pub allocations: Vec<Allocation>,
}

impl Pool {
    /// The seats the pool holds of `feature` with minimum version `min_version`.
    pub fn allocated(&self, feature: &str, min_version: &Version) -> Option<u64> {
        self.allocations
            .iter()
            .find(|a| a.feature == feature && a.min_version == *min_version)
            .map(|a| a.count)
    }
}

/// How one pooled feature's seats split between the named pools and the default pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSplit {
    /// The feature name.
    pub feature: String,
    /// The seats of every counted record of that name, any version.
    pub total: u64,
    /// The seats the named pools hold together.
    pub pooled: u64,
    /// What stays in the default pool: `total - pooled`.
    pub default: u64,
}

/// A requester as the rules of access see it: borrowed views, so matching costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The device's hostid as `KIND=VALUE` in normalised form (what [`HostId`]'s `Display`
    /// writes, e.g. `ethernet=0050569a3b01`).
    pub hostid: &'a str,
    /// The user the request names.
    pub user: Option<&'a str>,
    /// The device alias the request names.
    pub alias: Option<&'a str>,
    /// Attributes the client sends, as (name, value) pairs.
    pub attributes: &'a [(String, String)],
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledRule {
    when: When,
    /// Index into `ResolvedModel::pools`; `None` is the default pool.
    target: Option<usize>,
}

/// A model checked against the server's feature records: each pool's seats as counts, the
/// default pool's share of each pooled feature, and the rules of access ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    name: String,
    pools: Vec<Pool>,
    features: Vec<FeatureSplit>,
    rules: Vec<CompiledRule>,
    warnings: Vec<ModelWarning>,
}

impl ResolvedModel {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The named pools in the order first defined, each name once.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The named pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// For each feature some pool holds (in the order first written), how its seats split.
    /// A feature not listed is wholly in the default pool.
    pub fn features(&self) -> &[FeatureSplit] {
        &self.features
    }

    /// How `feature`'s seats split, if some pool holds it.
    pub fn feature(&self, feature: &str) -> Option<&FeatureSplit> {
        self.features.iter().find(|f| f.feature == feature)
    }

    /// The pool the rules of access send `who` to: the first rule whose conditions all hold
    /// decides; `None` is the default pool (a `default` target, or no rule matched).
    pub fn pool_for(&self, who: &Identity<'_>) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.when.matches(who))
            .and_then(|r| r.target)
            .and_then(|i| self.pools.get(i))
            .map(|p| p.name.as_str())
    }

    /// [`ResolvedModel::pool_for`] as the pool's place in [`ResolvedModel::pools`]: what the
    /// seat book keeps per lease (no string compared or copied).
    pub fn pool_index_for(&self, who: &Identity<'_>) -> Option<usize> {
        self.rules
            .iter()
            .find(|r| r.when.matches(who))
            .and_then(|r| r.target)
            .filter(|&i| i < self.pools.len())
    }

    /// What is legal but probably not meant (no rules, a pool no rule names, …).
    pub fn warnings(&self) -> &[ModelWarning] {
        &self.warnings
    }
}

/// One entry's resolved seats, for the over-allocation check.
struct Taken {
    pool: usize,
    min_version: Version,
    count: u64,
    at: Position,
}

fn resolve(model: &Model, records: &[Feature]) -> Result<ResolvedModel, ResolveError> {
    let mut pools: Vec<Pool> = Vec::new();
    let mut first_at: Vec<Position> = Vec::new();
    // per feature name, in order first written: every entry's seats
    let mut taken: Vec<(String, Vec<Taken>)> = Vec::new();
    let mut warnings = Vec::new();

    for partition in &model.partitions {
        let pool = match pools.iter().position(|p| p.name == partition.name) {
            Some(i) => i,
            None => {
                pools.push(Pool {
                    name: partition.name.clone(),
                    allocations: Vec::new(),
                });
                first_at.push(partition.at);
                pools.len() - 1
            }
        };
        for entry in &partition.entries {
            let count = entry_seats(entry, &partition.name, records, &mut warnings)?;
            let allocations = &mut pools[pool].allocations;
            match allocations
                .iter_mut()
                .find(|a| a.feature == entry.feature && a.min_version == entry.min_version)
            {
                Some(a) => a.count += count,
                None => allocations.push(Allocation {
                    feature: entry.feature.clone(),
                    min_version: entry.min_version.clone(),
                    count,
                }),
            }
            let t = Taken {
                pool,
                min_version: entry.min_version.clone(),
                count,
                at: entry.at,
            };
            match taken.iter_mut().find(|(f, _)| *f == entry.feature) {
                Some((_, list)) => list.push(t),
                None => taken.push((entry.feature.clone(), vec![t])),
            }
        }
    }

    let mut features = Vec::new();
    for (feature, list) in &taken {
        check_not_over_allocated(feature, list, &pools, records)?;
        let total = records
            .iter()
            .filter(|r| r.name == *feature)
            .filter_map(|r| r.count.get())
            .map(u64::from)
            .sum::<u64>();
        let pooled = list.iter().map(|t| t.count).sum::<u64>();
        features.push(FeatureSplit {
            feature: feature.clone(),
            total,
            pooled,
            default: total.saturating_sub(pooled),
        });
    }

    let mut rules = Vec::new();
    for rule in model.rules.iter().flatten() {
        let target = match &rule.target {
            Target::Default => None,
            Target::Pool(name) => {
                Some(pools.iter().position(|p| p.name == *name).ok_or_else(|| {
                    ResolveError::UndefinedPool {
                        at: rule.at,
                        pool: name.clone(),
                    }
                })?)
            }
        };
        rules.push(CompiledRule {
            when: rule.when.clone(),
            target,
        });
    }

    for (pool, at) in pools.iter().zip(&first_at) {
        if pool.allocations.is_empty() {
            warnings.push(ModelWarning::EmptyPool {
                at: *at,
                pool: pool.name.clone(),
            });
        }
    }
    let model_rules = model.rules.as_deref().unwrap_or_default();
    if model_rules.is_empty() {
        warnings.push(ModelWarning::NoRules);
    } else {
        if let Some(any) = model_rules.iter().position(|r| r.when == When::Any) {
            for r in &model_rules[any + 1..] {
                warnings.push(ModelWarning::UnreachableRule {
                    at: r.at,
                    any_at: model_rules[any].at,
                });
            }
        }
        for (i, pool) in pools.iter().enumerate() {
            if !rules.iter().any(|r| r.target == Some(i)) {
                warnings.push(ModelWarning::PoolNotTargeted {
                    pool: pool.name.clone(),
                });
            }
        }
    }

    Ok(ResolvedModel {
        name: model.name.clone(),
        pools,
        features,
        rules,
        warnings,
    })
}

/// The seats one entry takes, after checking that its feature exists and is counted.
fn entry_seats(
    entry: &Entry,
    pool: &str,
    records: &[Feature],
    warnings: &mut Vec<ModelWarning>,
) -> Result<u64, ResolveError> {
    let named: Vec<&Feature> = records.iter().filter(|r| r.name == entry.feature).collect();
    let matching: Vec<&&Feature> = named
        .iter()
        .filter(|r| r.version >= entry.min_version)
        .collect();
    if matching.is_empty() {
        let mut versions: Vec<Version> = named.iter().map(|r| r.version.clone()).collect();
        versions.sort();
        versions.dedup();
        return Err(ResolveError::UnknownFeature {
            at: entry.at,
            pool: pool.to_string(),
            feature: entry.feature.clone(),
            min_version: entry.min_version.clone(),
            versions,
        });
    }
    let mut total = 0u64;
    for r in &matching {
        match r.count {
            Count::Counted(n) => total += u64::from(n),
            Count::Uncounted => {
                return Err(ResolveError::Uncounted {
                    at: entry.at,
                    pool: pool.to_string(),
                    feature: entry.feature.clone(),
                    min_version: entry.min_version.clone(),
                })
            }
        }
    }
    Ok(match entry.amount {
        Amount::Seats(n) => u64::from(n),
        Amount::Percent(p) => {
            // total is at most records × u32::MAX, far below u64::MAX / 100
            let seats = total.saturating_mul(u64::from(p)) / 100;
            if seats == 0 {
                warnings.push(ModelWarning::PercentRoundsToZero {
                    at: entry.at,
                    pool: pool.to_string(),
                    feature: entry.feature.clone(),
                    percent: p,
                    total,
                });
            }
            seats
        }
    })
}

/// Records of version `v` or later serve entries of minimum version `v` or earlier, so the pools
/// fit exactly when, for every minimum version `v` in use, the entries at `v` or later take no
/// more than the records at `v` or later hold (the sets of records are nested, so this is
/// Hall's condition).
fn check_not_over_allocated(
    feature: &str,
    list: &[Taken],
    pools: &[Pool],
    records: &[Feature],
) -> Result<(), ResolveError> {
    let mut thresholds: Vec<&Version> = list.iter().map(|t| &t.min_version).collect();
    thresholds.sort();
    thresholds.dedup();
    for v in thresholds {
        let over: Vec<&Taken> = list.iter().filter(|t| t.min_version >= *v).collect();
        let asked: u64 = over.iter().map(|t| t.count).sum();
        let exists: u64 = records
            .iter()
            .filter(|r| r.name == feature && r.version >= *v)
            .filter_map(|r| r.count.get())
            .map(u64::from)
            .sum();
        if asked > exists {
            let mut shares: Vec<(String, u64)> = Vec::new();
            for (i, pool) in pools.iter().enumerate() {
                let n: u64 = over.iter().filter(|t| t.pool == i).map(|t| t.count).sum();
                if n > 0 {
                    shares.push((pool.name.clone(), n));
                }
            }
            return Err(ResolveError::OverAllocated {
                at: over.first().map_or_else(Position::default, |t| t.at),
                feature: feature.to_string(),
                min_version: v.clone(),
                asked,
                exists,
                pools: shares,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model definition from the vendor reference (/work/shared/seeds), verbatim.
    const SEED_MODEL: &str = r#"
model "exampleModelDefinition" {
  // Total feature count of eb-feature-android-eval: 8
  // Default partition shall get 0 lic and 8 in below partitions
  partitions {
    partition "0800 - PUNE" {
      "eb-feature-android-eval" 2.0 3 // P1 license count = 3
    }
    partition "0800 - PUNE" {
      "eb-feature-android-eval" 2.0 2 // P1 license count = 2
    }
    partition "2200 - NECKARSULM" {
      "eb-feature-android-eval" 2.0 3 // P1 license count = 2
    }
    partition "4600 - BRUSSELS" {
      "eb-feature-android-eval" 2.0 2 // P1 license count = 1
    }
    partition "1400 - KASSEL" {
      "eb-feature-android-eval" 2.0 1 // P1 license count = 4
    }
  }
}

"#;

    const EVAL: &str = "eb-feature-android-eval";

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn rec(name: &str, version: &str, count: u32) -> Feature {
        Feature::new(name, v(version), Count::Counted(count))
    }

    fn parse_err(text: &str) -> ModelError {
        Model::parse(text).unwrap_err()
    }

    fn at(line: u32, column: u32) -> Position {
        Position { line, column }
    }

    /// A model with one partition `p` holding `entry`, the entry on line 3 from column 21.
    fn one_entry(entry: &str) -> String {
        format!("model \"m\" {{\n  partitions {{\n    partition \"p\" {{ {entry} }}\n  }}\n}}\n")
    }

    fn allocations(r: &ResolvedModel) -> Vec<(&str, u64)> {
        r.pools()
            .iter()
            .map(|p| (p.name.as_str(), p.allocations.iter().map(|a| a.count).sum()))
            .collect()
    }

    #[test]
    fn seed_model_loads_and_counts_of_a_pool_named_twice_add_up() {
        let model = Model::parse(SEED_MODEL).unwrap();
        assert_eq!(model.name(), "exampleModelDefinition");
        assert_eq!(model.partitions().len(), 5);
        assert_eq!(model.rules(), None);
        let first = &model.partitions()[0];
        assert_eq!(first.name(), "0800 - PUNE");
        assert_eq!(first.position(), at(6, 5));
        let e = &first.entries()[0];
        assert_eq!(
            (e.feature(), e.min_version(), e.amount(), e.position()),
            (EVAL, &v("2.0"), Amount::Seats(3), at(7, 7))
        );

        let resolved = model.resolve(&[rec(EVAL, "2.0", 11)]).unwrap();
        assert_eq!(
            allocations(&resolved),
            [
                ("0800 - PUNE", 5),
                ("2200 - NECKARSULM", 3),
                ("4600 - BRUSSELS", 2),
                ("1400 - KASSEL", 1)
            ]
        );
        let pune = resolved.pool("0800 - PUNE").unwrap();
        assert_eq!(pune.allocated(EVAL, &v("2")), Some(5));
        assert_eq!(pune.allocated(EVAL, &v("3.0")), None);
        assert_eq!(
            resolved.feature(EVAL),
            Some(&FeatureSplit {
                feature: EVAL.into(),
                total: 11,
                pooled: 11,
                default: 0
            })
        );
        // no rules: legal, with a warning, and everyone is in the default pool
        assert_eq!(resolved.warnings(), [ModelWarning::NoRules]);
        let who = Identity {
            hostid: "ethernet=0050569a3b01",
            user: Some("alice"),
            alias: None,
            attributes: &[],
        };
        assert_eq!(resolved.pool_for(&who), None);
    }

    #[test]
    fn seed_model_on_the_eight_seats_its_comment_speaks_of_is_over_allocated() {
        // its counts add up to 11, not to the 8 its comment says
        let err = Model::parse(SEED_MODEL)
            .unwrap()
            .resolve(&[rec(EVAL, "2.0", 8)])
            .unwrap_err();
        assert_eq!(
            err,
            ResolveError::OverAllocated {
                at: at(7, 7),
                feature: EVAL.into(),
                min_version: v("2.0"),
                asked: 11,
                exists: 8,
                pools: vec![
                    ("0800 - PUNE".into(), 5),
                    ("2200 - NECKARSULM".into(), 3),
                    ("4600 - BRUSSELS".into(), 2),
                    ("1400 - KASSEL".into(), 1)
                ],
            }
        );
        assert_eq!(
            err.to_string(),
            "line 7, column 7: the pools ask for 11 seats of \"eb-feature-android-eval\" 2.0 or later \
             (\"0800 - PUNE\" 5, \"2200 - NECKARSULM\" 3, \"4600 - BRUSSELS\" 2, \"1400 - KASSEL\" 1), \
             but the server's records hold 8: lower the counts by 3"
        );
    }

    #[test]
    fn seed_model_prints_and_parses_back() {
        let model = Model::parse(SEED_MODEL).unwrap();
        let text = model.to_text();
        assert!(text.starts_with("model \"exampleModelDefinition\" {\n  partitions {\n    partition \"0800 - PUNE\" {\n      \"eb-feature-android-eval\" 2.0 3\n"));
        assert_eq!(strip(&Model::parse(&text).unwrap()), strip(&model));
    }

    #[test]
    fn syntax_error_names_line_column_expected_and_found() {
        let text = "model \"m\" {\n  partitions {\n    partition \"p\" {\n      \"f\" 2.0 x\n    }\n  }\n}\n";
        let err = parse_err(text);
        assert_eq!(
            err,
            ModelError::Syntax {
                at: at(4, 15),
                expected: EXPECT_COUNT,
                found: "\"x\"".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 4, column 15: expected a count (a number or a percentage like 25%), found \"x\""
        );
        assert_eq!(err.position(), at(4, 15));

        let err = parse_err("model \"m\" {");
        assert_eq!(
            err.to_string(),
            "line 1, column 12: expected `partitions`, found the end of the input"
        );
        let err = parse_err("model \"m\" { partitions { partition \"p\" { \"f\" \"2.0\" 3 } } }");
        assert_eq!(
            err.to_string(),
            "line 1, column 46: expected a minimum version like 2.0, found the string \"2.0\""
        );
        let err = parse_err("model \"m\" { partitions { } rules { user \"a\" \"p\" } }");
        assert_eq!(
            err,
            ModelError::Syntax {
                at: at(1, 45),
                expected: "`and` or \"=>\"",
                found: "the string \"p\"".into()
            }
        );
        let err =
            parse_err("model \"m\" { partitions { } rules { any and user \"a\" => default } }");
        assert_eq!(
            err.to_string(),
            "line 1, column 40: expected \"=>\", found \"and\""
        );
        // a keyword in the wrong place is a syntax error, not an unknown keyword
        let err = parse_err("model \"m\" { partitions { rules { } } }");
        assert!(
            matches!(
                err,
                ModelError::Syntax {
                    at: Position {
                        line: 1,
                        column: 26
                    },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn positions_count_lines_after_comments_and_crlf() {
        let text = "// a comment\r\n\r\nmodel \"m\" { // another\r\n  partitions {\r\n    partition \"p\" {\r\n      \"f\" 2.0 0%\r\n";
        assert_eq!(
            parse_err(text),
            ModelError::ZeroCount {
                at: at(6, 15),
                found: "0%".into()
            }
        );
        // columns count characters, not bytes
        let err = parse_err("model \"é\" { @");
        assert_eq!(
            err,
            ModelError::UnexpectedCharacter {
                at: at(1, 13),
                ch: '@'
            }
        );
    }

    #[test]
    fn unterminated_string_points_at_its_opening_quote() {
        assert_eq!(
            parse_err("model \"abc {\n  partitions {}\n}"),
            ModelError::UnterminatedString { at: at(1, 7) }
        );
        assert_eq!(
            parse_err("model \"abc"),
            ModelError::UnterminatedString { at: at(1, 7) }
        );
        assert_eq!(
            parse_err("model \"m\" {\n partitions {\n  partition \"ab\\"),
            ModelError::UnterminatedString { at: at(3, 13) }
        );
        assert_eq!(
            parse_err("model \"abc").to_string(),
            "line 1, column 7: this string is not closed: add a \" before the end of the line"
        );
    }

    #[test]
    fn escapes() {
        let m = Model::parse(r#"model "say \"hi\" \\ bye" { partitions { } }"#).unwrap();
        assert_eq!(m.name(), r#"say "hi" \ bye"#);
        assert_eq!(
            parse_err(r#"model "a\nb" { partitions { } }"#),
            ModelError::InvalidEscape {
                at: at(1, 9),
                found: 'n'
            }
        );
    }

    #[test]
    fn unknown_keyword() {
        let err = parse_err("model \"m\" {\n  partitons {\n");
        assert_eq!(
            err,
            ModelError::UnknownKeyword {
                at: at(2, 3),
                expected: "`partitions`",
                found: "partitons".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 2, column 3: expected `partitions`, found \"partitons\", which is not a keyword of the model language"
        );
        assert!(matches!(
            parse_err("modle \"m\" {}"),
            ModelError::UnknownKeyword {
                at: Position { line: 1, column: 1 },
                ..
            }
        ));
        assert!(matches!(
            parse_err("model \"m\" { partitions { partiton \"p\" {} } }"),
            ModelError::UnknownKeyword {
                at: Position {
                    line: 1,
                    column: 26
                },
                ..
            }
        ));
        assert!(matches!(
            parse_err("model \"m\" { partitions { } rulse { } }"),
            ModelError::UnknownKeyword {
                at: Position {
                    line: 1,
                    column: 28
                },
                ..
            }
        ));
        let err = parse_err("model \"m\" { partitions { } rules { host \"x\" => default } }");
        assert_eq!(
            err,
            ModelError::UnknownKeyword {
                at: at(1, 36),
                expected: "a rule (`hostid`, `user`, `alias`, `attribute` or `any`), or \"}\"",
                found: "host".into()
            }
        );
        assert!(matches!(
            parse_err("model \"m\" { partitions { } rules { any => defualt } }"),
            ModelError::UnknownKeyword {
                at: Position {
                    line: 1,
                    column: 43
                },
                ..
            }
        ));
    }

    #[test]
    fn counts_and_percentages_in_range() {
        // the entry starts at line 3, column 21; its count at column 29
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.0 101%")),
            ModelError::PercentOver100 {
                at: at(3, 29),
                found: "101%".into()
            }
        );
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.0 99999999999999999999999%")).to_string(),
            "line 3, column 29: a pool can take at most 100% of a feature, found 99999999999999999999999%"
        );
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.0 0")),
            ModelError::ZeroCount {
                at: at(3, 29),
                found: "0".into()
            }
        );
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.0 000%")),
            ModelError::ZeroCount {
                at: at(3, 29),
                found: "000%".into()
            }
        );
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.0 4294967296")),
            ModelError::CountTooLarge {
                at: at(3, 29),
                found: "4294967296".into()
            }
        );
        assert!(matches!(
            parse_err(&one_entry("\"f\" 2.0 2.5")),
            ModelError::Syntax {
                at: Position {
                    line: 3,
                    column: 29
                },
                ..
            }
        ));
        assert!(matches!(
            parse_err(&one_entry("\"f\" 2.0 -3")),
            ModelError::Syntax {
                at: Position {
                    line: 3,
                    column: 29
                },
                ..
            }
        ));
        assert!(matches!(
            parse_err(&one_entry("\"f\" 2.0 %")),
            ModelError::Syntax {
                at: Position {
                    line: 3,
                    column: 29
                },
                ..
            }
        ));
        let m = Model::parse(&one_entry(
            "\"f\" 2.0 4294967295 \"f\" 1 100% \"g\" 3.1.4 007%",
        ))
        .unwrap();
        let amounts: Vec<Amount> = m.partitions()[0]
            .entries()
            .iter()
            .map(Entry::amount)
            .collect();
        assert_eq!(
            amounts,
            [
                Amount::Seats(u32::MAX),
                Amount::Percent(100),
                Amount::Percent(7)
            ]
        );
    }

    #[test]
    fn versions_and_feature_names_checked() {
        assert_eq!(
            parse_err(&one_entry("\"f\" 2.x 1")),
            ModelError::InvalidVersion {
                at: at(3, 25),
                found: "2.x".into(),
                reason: VersionError::InvalidCharacter {
                    ch: 'x',
                    position: 3
                }
            }
        );
        assert_eq!(
            parse_err(&one_entry("\"bad name\" 2.0 1")),
            ModelError::InvalidFeatureName {
                at: at(3, 21),
                name: "bad name".into()
            }
        );
    }

    #[test]
    fn empty_names_and_the_reserved_pool_name() {
        let err = parse_err("model \"\" { partitions { } }");
        assert_eq!(
            err,
            ModelError::EmptyString {
                at: at(1, 7),
                what: "model name"
            }
        );
        assert_eq!(
            err.to_string(),
            "line 1, column 7: the model name is empty: give it at least one character"
        );
        assert_eq!(
            parse_err("model \"m\" { partitions { partition \"\" { } } }"),
            ModelError::EmptyString {
                at: at(1, 36),
                what: "pool name"
            }
        );
        assert_eq!(
            parse_err("model \"m\" { partitions { } rules { user \"\" => default } }"),
            ModelError::EmptyString {
                at: at(1, 41),
                what: "user"
            }
        );
        assert_eq!(
            parse_err("model \"m\" { partitions { partition \"Default\" { } } }"),
            ModelError::ReservedPoolName {
                at: at(1, 36),
                name: "Default".into()
            }
        );
    }

    #[test]
    fn rule_naming_an_undefined_pool() {
        let text = "model \"m\" {\n  partitions {\n    partition \"a\" { }\n    partition \"b\" { }\n  }\n  rules {\n    user \"x\" => \"c\"\n  }\n}";
        let err = parse_err(text);
        assert_eq!(
            err,
            ModelError::UndefinedPool {
                at: at(7, 17),
                pool: "c".into(),
                defined: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "line 7, column 17: no partition defines the pool \"c\" (defined: \"a\", \"b\")"
        );
    }

    #[test]
    fn trailing_input_and_bad_characters() {
        assert_eq!(
            parse_err("model \"m\" { partitions { } }\n}"),
            ModelError::TrailingInput {
                at: at(2, 1),
                found: "\"}\"".into()
            }
        );
        assert_eq!(
            parse_err("model \"m\" { partitions { } } model").to_string(),
            "line 1, column 30: expected the end of the input after the model's closing }, found \"model\""
        );
        assert_eq!(
            parse_err("model \"m\" { / }"),
            ModelError::UnexpectedCharacter {
                at: at(1, 13),
                ch: '/'
            }
        );
        // comments may end the input, and a byte-order mark may start it
        assert!(Model::parse("\u{feff}model \"m\" { partitions { } } // end").is_ok());
    }

    #[test]
    fn hostid_conditions_are_checked_and_normalised() {
        let m = Model::parse(
            "model \"m\" { partitions { partition \"p\" { } } rules {\n\
             hostid \"Ethernet=00:50:56:9A:3B:01\" => \"p\"\n\
             hostid \"ethernet=00:50:56*\" => \"p\"\n\
             hostid \"user=Alice\" => \"p\"\n\
             } }",
        )
        .unwrap();
        let patterns: Vec<&When> = m.rules().unwrap().iter().map(Rule::when).collect();
        assert_eq!(
            patterns,
            [
                &When::All(vec![Condition::HostId(Pattern::Exact(
                    "ethernet=0050569a3b01".into()
                ))]),
                &When::All(vec![Condition::HostId(Pattern::Prefix(
                    "ethernet=005056".into()
                ))]),
                &When::All(vec![Condition::HostId(Pattern::Exact("user=Alice".into()))]),
            ]
        );
        let err = parse_err(
            "model \"m\" { partitions { } rules {\n  hostid \"0050569a3b01\" => default } }",
        );
        assert_eq!(
            err,
            ModelError::InvalidHostId {
                at: at(2, 10),
                found: "0050569a3b01".into(),
                reason: HostIdError::MissingKind
            }
        );
        assert!(matches!(
            parse_err("model \"m\" { partitions { } rules { hostid \"nic=12*\" => default } }"),
            ModelError::InvalidHostId {
                reason: HostIdError::UnknownKind(_),
                ..
            }
        ));
        assert!(matches!(
            parse_err("model \"m\" { partitions { } rules { hostid \"ethernet=12\" => default } }"),
            ModelError::InvalidHostId {
                reason: HostIdError::InvalidValue { .. },
                ..
            }
        ));
    }

    #[test]
    fn percentages_resolve_against_matching_records_rounding_down() {
        let text = one_entry("\"f\" 1.0 25% \"f\" 1.0 33% \"g\" 2.0 50% \"g\" 1.0 10%");
        // f: 10 + 3 = 13 seats; g: 4 seats at 2.0 or later, 4 + 5 = 9 at 1.0 or later
        let records = [
            rec("f", "1.0", 10),
            rec("f", "3.0", 3),
            rec("g", "1.5", 5),
            rec("g", "2.0", 4),
            rec("other", "1.0", 7),
        ];
        let r = Model::parse(&text).unwrap().resolve(&records).unwrap();
        let pool = r.pool("p").unwrap();
        // floor(13 × 25 / 100) = 3, floor(13 × 33 / 100) = 4: 7, summed per feature and version
        assert_eq!(pool.allocated("f", &v("1.0")), Some(7));
        assert_eq!(pool.allocated("g", &v("2.0")), Some(2)); // floor(4 × 50 / 100)
        assert_eq!(pool.allocated("g", &v("1.0")), Some(0)); // floor(9 × 10 / 100)
        assert_eq!(
            r.features(),
            [
                FeatureSplit {
                    feature: "f".into(),
                    total: 13,
                    pooled: 7,
                    default: 6
                },
                FeatureSplit {
                    feature: "g".into(),
                    total: 9,
                    pooled: 2,
                    default: 7
                },
            ]
        );
        assert_eq!(r.feature("other"), None);
        assert!(r.warnings().contains(&ModelWarning::PercentRoundsToZero {
            at: at(3, 57),
            pool: "p".into(),
            feature: "g".into(),
            percent: 10,
            total: 9
        }));
    }

    #[test]
    fn percentages_over_pools_may_not_exceed_the_whole() {
        let text = "model \"m\" { partitions {\n partition \"a\" { \"f\" 1.0 60% }\n partition \"b\" { \"f\" 1.0 50% }\n} }";
        // floor(60% of 5) + floor(50% of 5) = 3 + 2 = 5: fits
        assert!(Model::parse(text)
            .unwrap()
            .resolve(&[rec("f", "1.0", 5)])
            .is_ok());
        // floor(60% of 10) + floor(50% of 10) = 11 > 10
        let err = Model::parse(text)
            .unwrap()
            .resolve(&[rec("f", "1.0", 10)])
            .unwrap_err();
        assert!(
            matches!(
                err,
                ResolveError::OverAllocated {
                    asked: 11,
                    exists: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.position(), at(2, 18));
    }

    #[test]
    fn over_allocation_is_checked_per_minimum_version() {
        let records = [rec("f", "1.0", 10), rec("f", "2.0", 2)];
        let model = |a: &str, b: &str| {
            Model::parse(&format!(
                "model \"m\" {{ partitions {{ partition \"a\" {{ {a} }} partition \"b\" {{ {b} }} }} }}"
            ))
            .unwrap()
        };
        // 12 seats in all, but only 2 of version 2.0 or later
        let err = model("\"f\" 1.0 1", "\"f\" 2.0 3")
            .resolve(&records)
            .unwrap_err();
        assert_eq!(
            err,
            ResolveError::OverAllocated {
                at: at(1, 70),
                feature: "f".into(),
                min_version: v("2.0"),
                asked: 3,
                exists: 2,
                pools: vec![("b".into(), 3)]
            }
        );
        let ok = model("\"f\" 1.0 10", "\"f\" 2.0 2")
            .resolve(&records)
            .unwrap();
        assert_eq!(
            ok.feature("f").map(|s| (s.total, s.pooled, s.default)),
            Some((12, 12, 0))
        );
        let err = model("\"f\" 1.0 11", "\"f\" 2.0 2")
            .resolve(&records)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ResolveError::OverAllocated {
                    asked: 13,
                    exists: 12,
                    ..
                }
            ),
            "{err:?}"
        );
        // a record of a later version counts for an earlier minimum
        let ok = model("\"f\" 1.5 2", "\"f\" 1 1").resolve(&records).unwrap();
        assert_eq!(allocations(&ok), [("a", 2), ("b", 1)]);
    }

    #[test]
    fn unknown_and_uncounted_features_refused_naming_the_place() {
        let text = one_entry("\"f\" 3.0 1");
        let err = Model::parse(&text)
            .unwrap()
            .resolve(&[rec("g", "1.0", 1)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3, column 21: pool \"p\" takes \"f\" 3.0 or later, but the server holds no record of \"f\""
        );
        let err = Model::parse(&text)
            .unwrap()
            .resolve(&[rec("f", "2.0", 1), rec("f", "1.0", 1), rec("f", "2.0", 4)])
            .unwrap_err();
        assert_eq!(
            err,
            ResolveError::UnknownFeature {
                at: at(3, 21),
                pool: "p".into(),
                feature: "f".into(),
                min_version: v("3.0"),
                versions: vec![v("1.0"), v("2.0")]
            }
        );
        assert_eq!(
            err.to_string(),
            "line 3, column 21: pool \"p\" takes \"f\" 3.0 or later, but the server's records of \"f\" have only version 1.0, 2.0"
        );
        let uncounted = Feature::new("f", v("3.0"), Count::Uncounted);
        let err = Model::parse(&text)
            .unwrap()
            .resolve(&[rec("f", "3.0", 5), uncounted.clone()])
            .unwrap_err();
        assert_eq!(
            err,
            ResolveError::Uncounted {
                at: at(3, 21),
                pool: "p".into(),
                feature: "f".into(),
                min_version: v("3.0")
            }
        );
        // an uncounted record below the minimum version does not match
        let older = Feature::new("f", v("2.0"), Count::Uncounted);
        assert!(Model::parse(&text)
            .unwrap()
            .resolve(&[rec("f", "3.0", 5), older])
            .is_ok());
    }

    const RULES_MODEL: &str = r#"model "sites" {
  partitions {
    partition "pune" { "f" 1.0 2 }
    partition "kassel" { "f" 1.0 2 }
    partition "sales" { "f" 1.0 2 }
    partition "builds" { "f" 1.0 2 }
  }
  rules {
    hostid "ethernet=00:50:56:9a:3b:01" => "pune"   // this machine, whoever uses it
    user "root" => default
    user "bob" and attribute "site" = "kassel" => "kassel"
    attribute "department" = "sales" => "sales"
    alias "build-*" => "builds"
    hostid "ethernet=0050*" => "pune"
    any => default
  }
}"#;

    #[test]
    fn rules_first_match_wins() {
        let r = Model::parse(RULES_MODEL)
            .unwrap()
            .resolve(&[rec("f", "1.0", 8)])
            .unwrap();
        assert_eq!(r.warnings(), []);
        let attrs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let sales = attrs(&[("site", "kassel"), ("department", "sales")]);
        let kassel = attrs(&[("site", "kassel")]);
        let who = |hostid, user, alias, attributes| Identity {
            hostid,
            user,
            alias,
            attributes,
        };
        let cases: Vec<(Identity<'_>, Option<&str>)> = vec![
            // the hostid rule comes first, whoever the user
            (
                who("ethernet=0050569a3b01", Some("root"), None, &sales[..]),
                Some("pune"),
            ),
            (
                who("ethernet=aa50569a3b01", Some("root"), None, &sales[..]),
                None,
            ),
            // both conditions of an `and`
            (
                who("ethernet=aa50569a3b01", Some("bob"), None, &kassel[..]),
                Some("kassel"),
            ),
            (
                who("ethernet=aa50569a3b01", Some("alice"), None, &kassel[..]),
                None,
            ),
            (
                who("ethernet=aa50569a3b01", Some("bob"), None, &sales[..]),
                Some("kassel"),
            ),
            // any attribute of that name and value
            (
                who("ethernet=aa50569a3b01", Some("alice"), None, &sales[..]),
                Some("sales"),
            ),
            (
                who("ethernet=aa50569a3b01", None, None, &sales[..]),
                Some("sales"),
            ),
            // prefix alias; exact case
            (
                who("ethernet=aa50569a3b01", None, Some("build-7"), &[]),
                Some("builds"),
            ),
            (
                who("ethernet=aa50569a3b01", None, Some("build-"), &[]),
                Some("builds"),
            ),
            (
                who("ethernet=aa50569a3b01", None, Some("Build-7"), &[]),
                None,
            ),
            (
                who("ethernet=aa50569a3b01", None, Some("rebuild-7"), &[]),
                None,
            ),
            // prefix hostid
            (who("ethernet=0050aaaaaaaa", None, None, &[]), Some("pune")),
            // `any => default` catches the rest; a user pattern needs a user
            (who("user=bob", None, None, &kassel[..]), None),
        ];
        for (identity, pool) in &cases {
            assert_eq!(r.pool_for(identity), *pool, "{identity:?}");
        }
    }

    #[test]
    fn warnings_for_unreachable_rules_unused_and_empty_pools() {
        let text = "model \"m\" {\n  partitions {\n    partition \"a\" { \"f\" 1.0 1 }\n    partition \"b\" { }\n    partition \"c\" { \"f\" 1.0 1 }\n  }\n  rules {\n    any => \"a\"\n    user \"x\" => \"b\"\n  }\n}";
        let r = Model::parse(text)
            .unwrap()
            .resolve(&[rec("f", "1.0", 2)])
            .unwrap();
        assert_eq!(
            r.warnings(),
            [
                ModelWarning::EmptyPool {
                    at: at(4, 5),
                    pool: "b".into()
                },
                ModelWarning::UnreachableRule {
                    at: at(9, 5),
                    any_at: at(8, 5)
                },
                ModelWarning::PoolNotTargeted { pool: "c".into() },
            ]
        );
        let who = Identity {
            hostid: "user=x",
            user: Some("x"),
            alias: None,
            attributes: &[],
        };
        assert_eq!(r.pool_for(&who), Some("a"));
        // an empty rules block is the same as none
        let r = Model::parse("model \"m\" { partitions { } rules { } }")
            .unwrap()
            .resolve(&[])
            .unwrap();
        assert_eq!(r.warnings(), [ModelWarning::NoRules]);
        assert_eq!(r.pools(), []);
    }

    #[test]
    fn pattern_star_only_at_the_end_is_a_prefix() {
        assert_eq!(Pattern::from_text("a*b"), Pattern::Exact("a*b".into()));
        assert_eq!(Pattern::from_text("*"), Pattern::Prefix(String::new()));
        assert!(Pattern::from_text("*").matches(""));
        assert!(Pattern::from_text("a*b").matches("a*b"));
        assert!(!Pattern::from_text("a*b").matches("axb"));
        assert_eq!(Pattern::from_text("ab*").to_string(), "\"ab*\"");
    }

    #[test]
    fn the_documented_example_resolves_as_the_docs_say() {
        // docs/model-language.md, "A first example"
        let text = r#"model "sites" {
  // 12 seats of solver 2.0 in all
  partitions {
    partition "pune"   { "solver" 2.0 4 }
    partition "kassel" { "solver" 2.0 25% }     // a quarter: 3 of 12
    partition "builds" {
      "solver" 2.0 2
      "mesher" 1.0 50%
    }
  }
  rules {
    hostid "ethernet=0050569a3b01" => "pune"    // this machine, whoever uses it
    user "root" => default
    alias "build-*" => "builds"                 // every alias starting with build-
    attribute "site" = "kassel" and user "*" => "kassel"
    any => default
  }
}"#;
        let r = Model::parse(text)
            .unwrap()
            .resolve(&[rec("solver", "2.0", 12), rec("mesher", "1.2", 5)])
            .unwrap();
        assert_eq!(allocations(&r), [("pune", 4), ("kassel", 3), ("builds", 4)]);
        assert_eq!(r.feature("solver").map(|s| s.default), Some(3));
        assert_eq!(
            r.feature("mesher").map(|s| (s.pooled, s.default)),
            Some((2, 3))
        );
        assert_eq!(r.warnings(), []);
        let site = [("site".to_string(), "kassel".to_string())];
        let who = |user, alias| Identity {
            hostid: "ethernet=0050569a3b02",
            user,
            alias,
            attributes: &site,
        };
        assert_eq!(r.pool_for(&who(Some("root"), Some("build-1"))), None);
        assert_eq!(
            r.pool_for(&who(Some("eve"), Some("build-1"))),
            Some("builds")
        );
        assert_eq!(r.pool_for(&who(Some("eve"), None)), Some("kassel"));
        assert_eq!(r.pool_for(&who(None, None)), None);
    }

    /// The model with every position zeroed, to compare what two models say.
    fn strip(m: &Model) -> Model {
        let mut m = m.clone();
        for p in &mut m.partitions {
            p.at = Position::default();
            for e in &mut p.entries {
                e.at = Position::default();
            }
        }
        for r in m.rules.iter_mut().flatten() {
            r.at = Position::default();
        }
        m
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _\"\\\\*.%{}=>/-]{1,12}"
    }

    fn arb_pool_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["0800 - PUNE", "a", "b\"q\"", "c\\d"]).prop_map(String::from),
            arb_text().prop_filter("not default", |s| !s.eq_ignore_ascii_case("default")),
        ]
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            "[a-z0-9][a-z0-9_.-]{0,10}",
            prop::collection::vec(0u32..1000, 1..4),
            prop_oneof![
                (1u32..=u32::MAX).prop_map(Amount::Seats),
                (1u8..=100).prop_map(Amount::Percent)
            ],
        )
            .prop_map(|(feature, parts, amount)| Entry {
                feature,
                min_version: Version::new(&parts).unwrap(),
                amount,
                at: Position::default(),
            })
    }

    fn arb_partition() -> impl Strategy<Value = Partition> {
        (arb_pool_name(), prop::collection::vec(arb_entry(), 0..4)).prop_map(|(name, entries)| {
            Partition {
                name,
                entries,
                at: Position::default(),
            }
        })
    }

    fn arb_condition() -> impl Strategy<Value = Condition> {
        let hostids = prop::sample::select(vec![
            "ethernet=0050569a3b01",
            "ethernet=00:50*",
            "user=alice",
            "string=lab \"42\"",
            "vm_uuid=564D*",
            "*",
        ]);
        prop_oneof![
            hostids.prop_map(|h| Condition::HostId(hostid_pattern(h).unwrap())),
            arb_text().prop_map(|t| Condition::User(Pattern::from_text(&t))),
            arb_text().prop_map(|t| Condition::Alias(Pattern::from_text(&t))),
            (arb_text(), arb_text()).prop_map(|(name, value)| Condition::Attribute {
                name,
                value: Pattern::from_text(&value)
            }),
        ]
    }

    prop_compose! {
        fn arb_model()(
            name in arb_text(),
            partitions in prop::collection::vec(arb_partition(), 0..4),
            rules in prop::option::of(prop::collection::vec(
                (prop::option::of(prop::collection::vec(arb_condition(), 1..4)),
                 prop::option::of(any::<prop::sample::Index>())),
                0..5,
            )),
        ) -> Model {
            let pools = defined_pools(&partitions);
            let rules = rules.map(|rules| rules.into_iter().map(|(conditions, target)| Rule {
                when: conditions.map_or(When::Any, When::All),
                target: match target {
                    Some(i) if !pools.is_empty() => Target::Pool(i.get(&pools).clone()),
                    _ => Target::Default,
                },
                at: Position::default(),
            }).collect());
            Model { name, partitions, rules }
        }
    }

    proptest! {
        #[test]
        fn printed_model_parses_back_to_the_same_model(model in arb_model()) {
            let text = model.to_text();
            let back = Model::parse(&text);
            prop_assert!(back.is_ok(), "{:?}\n{}", back, text);
            let back = back.unwrap();
            prop_assert_eq!(strip(&back), strip(&model));
            prop_assert_eq!(back.to_text(), text);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Model::parse(&s);
        }

        #[test]
        fn parse_of_a_cut_or_altered_model_never_panics(
            cut in 0usize..400, at in 0usize..400, ch in "\\PC",
        ) {
            let chars: Vec<char> = RULES_MODEL.chars().collect();
            let cut: String = chars.iter().take(cut).collect();
            let _ = Model::parse(&cut);
            let mut altered = chars.clone();
            if let Some(c) = altered.get_mut(at % chars.len()) {
                *c = ch.chars().next().unwrap_or('x');
            }
            let altered: String = altered.into_iter().collect();
            if let Ok(m) = Model::parse(&altered) {
                let _ = m.resolve(&[rec("f", "1.0", 8)]);
            }
        }
    }
}
