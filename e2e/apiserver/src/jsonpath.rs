//! The subset of Kubernetes JSONPath that CRD `additionalPrinterColumns` use: field paths
//! (`.status.rotator`, `.metadata['k8s.io/x']`), list indices (`[0]`, `[*]`) and filters with
//! `==` / `!=` on a relative field (`.status.conditions[?(@.type=="Ready")].status`).
//!
//! The real API server accepts only "simple" paths for printer columns too (no recursive descent,
//! unions or ranges); what it evaluates it prints from the first result, as `first` does.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// An object member.
    Field(String),
    /// A list element; negative counts from the end.
    Index(i64),
    /// Every element of a list (or every value of an object).
    All,
    /// List elements whose relative path compares (un)equal to a value.
    Filter {
        path: Vec<Step>,
        equal: bool,
        value: Value,
    },
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("JSONPath {:?}: {what} at offset {}", self.src, self.i)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// A bare member name: anything up to the next `.`, `[`, or the end of a filter expression.
    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !matches!(c, b'.' | b'[' | b']' | b'(' | b')' | b'=' | b'!' | b' '))
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("expected a field name"));
        }
        Ok(self.src[start..self.i].to_string())
    }

    fn quoted(&mut self) -> Result<String, String> {
        let Some(q) = self.peek().filter(|c| *c == b'\'' || *c == b'"') else {
            return Err(self.err("expected a quoted string"));
        };
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c != q) {
            self.i += 1;
        }
        if !self.eat(q) {
            return Err(self.err("unterminated string"));
        }
        Ok(self.src[start..self.i - 1].to_string())
    }

    fn literal(&mut self) -> Result<Value, String> {
        self.skip_ws();
        if matches!(self.peek(), Some(b'\'' | b'"')) {
            return Ok(Value::String(self.quoted()?));
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
        {
            self.i += 1;
        }
        let word = &self.src[start..self.i];
        match word {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => serde_json::from_str::<serde_json::Number>(word)
                .map(Value::Number)
                .map_err(|_| self.err("expected a string, number or boolean")),
        }
    }

    /// Steps until the end of input or, inside a filter, until the comparison operator.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'.') => {
                    self.i += 1;
                    if self.eat(b'*') {
                        steps.push(Step::All);
                    } else if self.peek() == Some(b'.') {
                        return Err(self.err("recursive descent (..) is not supported"));
                    } else {
                        steps.push(Step::Field(self.name()?));
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.skip_ws();
                    let step = match self.peek() {
                        Some(b'\'' | b'"') => Step::Field(self.quoted()?),
                        Some(b'*') => {
                            self.i += 1;
                            Step::All
                        }
                        Some(b'?') => {
                            self.i += 1;
                            self.skip_ws();
                            if !self.eat(b'(') {
                                return Err(self.err("expected ( after ?"));
                            }
                            self.skip_ws();
                            if !self.eat(b'@') {
                                return Err(self.err("a filter must start with @"));
                            }
                            let path = self.steps(true)?;
                            self.skip_ws();
                            let equal = if self.s[self.i..].starts_with(b"==") {
                                true
                            } else if self.s[self.i..].starts_with(b"!=") {
                                false
                            } else {
                                return Err(self.err("only == and != filters are supported"));
                            };
                            self.i += 2;
                            let value = self.literal()?;
                            self.skip_ws();
                            if !self.eat(b')') {
                                return Err(self.err("expected )"));
                            }
                            Step::Filter { path, equal, value }
                        }
                        _ => {
                            let start = self.i;
                            self.eat(b'-');
                            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                                self.i += 1;
                            }
                            let n = self.src[start..self.i].parse::<i64>().map_err(|_| {
                                self.err("expected an index, a quoted name, * or ?(...)")
                            })?;
                            if self.peek() == Some(b':') {
                                return Err(self.err("slices are not supported"));
                            }
                            Step::Index(n)
                        }
                    };
                    self.skip_ws();
                    if !self.eat(b']') {
                        return Err(self.err("expected ]"));
                    }
                    steps.push(step);
                }
                Some(b' ' | b'=' | b'!' | b')') if in_filter => break,
                Some(_) => return Err(self.err("unexpected character")),
            }
        }
        Ok(steps)
    }
}

impl JsonPath {
    /// Parses a path such as `.status.conditions[?(@.type=="Ready")].status`; the `{...}` form
    /// the real server wraps it in is accepted too.
    pub fn parse(src: &str) -> Result<Self, String> {
        let trimmed = src.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(trimmed);
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let mut p = Parser {
            s: inner.as_bytes(),
            i: 0,
            src: inner,
        };
        let steps = p.steps(false)?;
        if p.i != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(Self(steps))
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval(&self.0, root)
    }

    /// The first value selected, which is what a printer column shows.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(k) => next.extend(v.get(k)),
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 {
                            i64::try_from(a.len()).unwrap_or(i64::MAX) + i
                        } else {
                            *i
                        };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, equal, value } => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().filter(|item| {
                            let found = eval(path, item);
                            // A missing field matches neither == nor != (as in the Go library,
                            // which skips elements where the left side does not resolve).
                            !found.is_empty() && found.iter().any(|f| (*f == value) == *equal)
                        }));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "metadata": {"name": "db", "annotations": {"keyturn.dev/x": "y"}},
            "status": {
                "rotator": "postgres",
                "count": 3,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "Idle"},
                    {"type": "Ready", "status": "True", "reason": "Rotated"},
                ],
            },
        })
    }

    fn first(path: &str) -> Option<Value> {
        JsonPath::parse(path).unwrap().first(&doc()).cloned()
    }

    #[test]
    fn field_paths() {
        assert_eq!(first(".status.rotator"), Some(json!("postgres")));
        assert_eq!(first("{.status.count}"), Some(json!(3)));
        assert_eq!(first("$.metadata.name"), Some(json!("db")));
        assert_eq!(
            first(".metadata.annotations['keyturn.dev/x']"),
            Some(json!("y"))
        );
        assert_eq!(first(".status.missing"), None);
        assert_eq!(first(".status.rotator.deeper"), None);
    }

    #[test]
    fn indices_and_wildcards() {
        assert_eq!(first(".status.conditions[1].type"), Some(json!("Ready")));
        assert_eq!(
            first(".status.conditions[-1].reason"),
            Some(json!("Rotated"))
        );
        assert_eq!(first(".status.conditions[5].type"), None);
        let all = JsonPath::parse(".status.conditions[*].type").unwrap();
        assert_eq!(
            all.find(&doc()),
            vec![&json!("Progressing"), &json!("Ready")]
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(json!("True"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type == 'Ready')].reason"),
            Some(json!("Rotated"))
        );
        assert_eq!(
            first(r#".status.conditions[?(@.type!="Ready")].reason"#),
            Some(json!("Idle"))
        );
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Stalled")].status"#),
            None
        );
        assert_eq!(first(r#".status.conditions[?(@.nope=="x")].status"#), None);
        // A filter on something that is not a list selects nothing.
        assert_eq!(first(r#".status[?(@.type=="Ready")]"#), None);
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for bad in [
            "..status",
            ".status..rotator",
            ".a[1:2]",
            ".a[?(@.x>1)]",
            ".a[",
            ".a[?(@.x==)]",
            ".a]",
            ".",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
