//! A segment's definition: conditions on catalogue fields, all or any of them, checked
//! against the field catalogue and compiled for fast evaluation over a million profiles.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::field::{parse_bool, parse_date, parse_number};
use crate::domain::text::{NameError, clean_name};
use crate::domain::{FieldType, Invalid};

/// A segment's name: 1 to 100 characters, trimmed, in NFC, no invisible characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName(String);

impl SegmentName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        clean_name(raw, 100).map(Self).map_err(|err| match err {
            NameError::Empty | NameError::TooLong { .. } => {
                "Name: a segment needs a name of 1 to 100 characters.".into()
            }
            err => format!("Name: {err}.").into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether all conditions must hold or any one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SegmentMatch)]
pub enum Match {
    All,
    Any,
}

/// How a condition compares a field with its value; which operators a field takes depends
/// on its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SegmentOperator)]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    GreaterThan,
    LessThan,
    Before,
    After,
    IsEmpty,
    IsNotEmpty,
}

impl Operator {
    pub const ALL: [Operator; 9] = [
        Operator::Equals,
        Operator::NotEquals,
        Operator::Contains,
        Operator::GreaterThan,
        Operator::LessThan,
        Operator::Before,
        Operator::After,
        Operator::IsEmpty,
        Operator::IsNotEmpty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "not_equals",
            Operator::Contains => "contains",
            Operator::GreaterThan => "greater_than",
            Operator::LessThan => "less_than",
            Operator::Before => "before",
            Operator::After => "after",
            Operator::IsEmpty => "is_empty",
            Operator::IsNotEmpty => "is_not_empty",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "does not equal",
            Operator::Contains => "contains",
            Operator::GreaterThan => "is greater than",
            Operator::LessThan => "is less than",
            Operator::Before => "is before",
            Operator::After => "is after",
            Operator::IsEmpty => "is empty",
            Operator::IsNotEmpty => "is not empty",
        }
    }

    pub fn needs_value(self) -> bool {
        !matches!(self, Operator::IsEmpty | Operator::IsNotEmpty)
    }

    /// Which operators make sense for a field type.
    pub fn applies_to(self, field_type: FieldType) -> bool {
        use FieldType::*;
        match self {
            Operator::Equals | Operator::NotEquals | Operator::IsEmpty | Operator::IsNotEmpty => {
                true
            }
            Operator::Contains => matches!(field_type, Text | Email),
            Operator::GreaterThan | Operator::LessThan => field_type == Number,
            Operator::Before | Operator::After => field_type == Date,
        }
    }
}

impl FromStr for Operator {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Operator::ALL
            .into_iter()
            .find(|op| op.as_str() == raw)
            .ok_or_else(|| format!("unknown operator {raw:?}"))
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub op: Operator,
    #[serde(default)]
    pub value: String,
}

/// What a rules segment stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRules {
    #[serde(rename = "match")]
    pub match_: Match,
    pub conditions: Vec<Condition>,
}

/// A condition ready to run: its value parsed for the field's type.
#[derive(Debug, Clone)]
struct Compiled {
    field: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    TextEquals(String),
    TextNotEquals(String),
    TextContains(String),
    NumberEquals(f64),
    NumberNotEquals(f64),
    GreaterThan(f64),
    LessThan(f64),
    DateEquals(String),
    DateNotEquals(String),
    Before(String),
    After(String),
    BoolEquals(bool),
    BoolNotEquals(bool),
    IsEmpty,
    IsNotEmpty,
}

/// Rules checked against the catalogue, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    match_: Match,
    conditions: Vec<Compiled>,
}

/// The most conditions a segment takes.
pub const MAX_CONDITIONS: usize = 100;

/// Which part of a segment's rules a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePart {
    /// The conditions as a whole: none, or too many.
    Conditions,
    Field,
    Operator,
    Value,
}

/// A refusal of a segment's rules: the condition (0-based) and the part of it at fault,
/// and what is wrong. Shown as "Condition 2: …" (1-based), as the rule builder lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub condition: Option<usize>,
    pub part: RulePart,
    pub message: String,
}

impl RuleError {
    fn of(index: usize, part: RulePart, message: impl Into<String>) -> Self {
        Self {
            condition: Some(index),
            part,
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self {
            condition: None,
            part: RulePart::Conditions,
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.condition {
            Some(index) => write!(f, "Condition {}: {}", index + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Condition {
    /// A condition as asked for; its value is kept trimmed.
    pub fn new(field: impl Into<String>, op: Operator, value: &str) -> Self {
        Self {
            field: field.into(),
            op,
            value: value.trim().to_owned(),
        }
    }

    /// This condition checked against the field catalogue (it is condition `index`).
    fn check(
        &self,
        index: usize,
        catalogue: &HashMap<String, FieldType>,
    ) -> Result<Compiled, RuleError> {
        let Some(&field_type) = catalogue.get(&self.field) else {
            let message = if self.field.trim().is_empty() {
                "choose a field.".to_owned()
            } else {
                format!("there is no profile field “{}”.", self.field)
            };
            return Err(RuleError::of(index, RulePart::Field, message));
        };
        let op = self.op;
        if !op.applies_to(field_type) {
            let message = format!("{field_type} fields cannot use “{}”.", op.label());
            return Err(RuleError::of(index, RulePart::Operator, message));
        }
        let value = self.value.trim();
        if op.needs_value() && value.is_empty() {
            let message = format!("enter a value for {}.", self.field);
            return Err(RuleError::of(index, RulePart::Value, message));
        }
        match compile_test(field_type, op, value) {
            Ok(test) => Ok(Compiled {
                field: self.field.clone(),
                test,
            }),
            Err(why) => Err(RuleError::of(index, RulePart::Value, format!("{why}."))),
        }
    }
}

impl SegmentRules {
    /// Checks every condition against the field catalogue; the errors name the condition
    /// (1-based) and what is wrong.
    pub fn compile(
        &self,
        catalogue: &HashMap<String, FieldType>,
    ) -> Result<CompiledRules, Vec<Invalid>> {
        self.check(catalogue)
            .map_err(|errors| errors.iter().map(|e| Invalid::new(e.to_string())).collect())
    }

    /// [`compile`](Self::compile), each refusal saying which condition and which part of
    /// it is at fault.
    pub fn check(
        &self,
        catalogue: &HashMap<String, FieldType>,
    ) -> Result<CompiledRules, Vec<RuleError>> {
        let count = self.conditions.len();
        if count == 0 {
            return Err(vec![RuleError::whole("Add at least one condition.")]);
        }
        if count > MAX_CONDITIONS {
            return Err(vec![RuleError::whole(format!(
                "A segment takes at most {MAX_CONDITIONS} conditions; this one has {count}."
            ))]);
        }
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for (i, condition) in self.conditions.iter().enumerate() {
            match condition.check(i, catalogue) {
                Ok(c) => compiled.push(c),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(CompiledRules {
                match_: self.match_,
                conditions: compiled,
            })
        } else {
            Err(errors)
        }
    }
}

fn compile_test(field_type: FieldType, op: Operator, value: &str) -> Result<Test, Invalid> {
    use FieldType::*;
    let number = || parse_number(value).ok_or_else(|| format!("{value:?} is not a number"));
    let date = || parse_date(value).ok_or_else(|| format!("{value:?} is not a date (YYYY-MM-DD)"));
    let boolean = || parse_bool(value).ok_or_else(|| format!("{value:?} is not true or false"));
    Ok(match (op, field_type) {
        (Operator::IsEmpty, _) => Test::IsEmpty,
        (Operator::IsNotEmpty, _) => Test::IsNotEmpty,
        (Operator::Equals, Text | Email) => Test::TextEquals(value.to_lowercase()),
        (Operator::NotEquals, Text | Email) => Test::TextNotEquals(value.to_lowercase()),
        (Operator::Contains, _) => Test::TextContains(value.to_lowercase()),
        (Operator::Equals, Number) => Test::NumberEquals(number()?),
        (Operator::NotEquals, Number) => Test::NumberNotEquals(number()?),
        (Operator::GreaterThan, _) => Test::GreaterThan(number()?),
        (Operator::LessThan, _) => Test::LessThan(number()?),
        (Operator::Equals, Date) => Test::DateEquals(date()?),
        (Operator::NotEquals, Date) => Test::DateNotEquals(date()?),
        (Operator::Before, _) => Test::Before(date()?),
        (Operator::After, _) => Test::After(date()?),
        (Operator::Equals, Boolean) => Test::BoolEquals(boolean()?),
        (Operator::NotEquals, Boolean) => Test::BoolNotEquals(boolean()?),
    })
}

impl CompiledRules {
    /// True when a profile's attributes satisfy the rules. A missing or empty value
    /// matches only "is empty" and the "does not equal" operators.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        let mut results = self
            .conditions
            .iter()
            .map(|c| c.test.check(attributes.get(&c.field)));
        match self.match_ {
            Match::All => results.all(|r| r),
            Match::Any => results.any(|r| r),
        }
    }
}

impl Test {
    fn check(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null() && v.as_str() != Some(""));
        let Some(value) = value else {
            return matches!(
                self,
                Test::IsEmpty
                    | Test::TextNotEquals(_)
                    | Test::NumberNotEquals(_)
                    | Test::DateNotEquals(_)
                    | Test::BoolNotEquals(_)
            );
        };
        let text = || match value {
            Value::String(s) => s.to_lowercase(),
            other => other.to_string(),
        };
        let number = || match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_number(s),
            _ => None,
        };
        let date = || value.as_str().unwrap_or_default();
        let boolean = || match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            _ => None,
        };
        match self {
            Test::IsEmpty => false,
            Test::IsNotEmpty => true,
            Test::TextEquals(want) => text() == *want,
            Test::TextNotEquals(want) => text() != *want,
            Test::TextContains(want) => text().contains(want.as_str()),
            Test::NumberEquals(want) => number() == Some(*want),
            Test::NumberNotEquals(want) => number() != Some(*want),
            Test::GreaterThan(limit) => number().is_some_and(|n| n > *limit),
            Test::LessThan(limit) => number().is_some_and(|n| n < *limit),
            Test::DateEquals(want) => date() == want,
            Test::DateNotEquals(want) => date() != want,
            Test::Before(limit) => !date().is_empty() && date() < limit.as_str(),
            Test::After(limit) => date() > limit.as_str(),
            Test::BoolEquals(want) => boolean() == Some(*want),
            Test::BoolNotEquals(want) => boolean() != Some(*want),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalogue() -> HashMap<String, FieldType> {
        [
            ("Country", FieldType::Text),
            ("Email", FieldType::Email),
            ("Spend", FieldType::Number),
            ("LastPurchase", FieldType::Date),
            ("OptIn", FieldType::Boolean),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t))
        .collect()
    }

    fn rules(match_: Match, conditions: &[(&str, Operator, &str)]) -> SegmentRules {
        SegmentRules {
            match_,
            conditions: conditions
                .iter()
                .map(|(f, op, v)| Condition {
                    field: (*f).into(),
                    op: *op,
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    fn matches(conditions: &[(&str, Operator, &str)], profile: Value) -> bool {
        rules(Match::All, conditions)
            .compile(&catalogue())
            .unwrap()
            .matches(profile.as_object().unwrap())
    }

    #[test]
    fn every_operator_does_what_its_name_says() {
        use Operator::*;
        let p = json!({ "Country": "Germany", "Email": "Ada@Northwind.io", "Spend": 1200.5,
                        "LastPurchase": "2026-03-01", "OptIn": true });
        assert!(matches(&[("Country", Equals, "germany")], p.clone()));
        assert!(!matches(&[("Country", Equals, "France")], p.clone()));
        assert!(matches(&[("Country", NotEquals, "France")], p.clone()));
        assert!(matches(&[("Email", Contains, "northwind")], p.clone()));
        assert!(matches(&[("Spend", GreaterThan, "1000")], p.clone()));
        assert!(!matches(&[("Spend", LessThan, "1000")], p.clone()));
        assert!(matches(&[("Spend", Equals, "1200.5")], p.clone()));
        assert!(matches(
            &[("LastPurchase", Before, "2026-04-01")],
            p.clone()
        ));
        assert!(!matches(
            &[("LastPurchase", After, "2026-04-01")],
            p.clone()
        ));
        assert!(matches(
            &[("LastPurchase", Equals, "2026-03-01")],
            p.clone()
        ));
        assert!(matches(&[("OptIn", Equals, "yes")], p.clone()));
        assert!(matches(&[("OptIn", NotEquals, "false")], p.clone()));
        assert!(matches(&[("Country", IsNotEmpty, "")], p.clone()));
        assert!(!matches(&[("Country", IsEmpty, "")], p));
    }

    #[test]
    fn missing_values_match_only_is_empty_and_does_not_equal() {
        use Operator::*;
        let p = json!({ "Country": "", "Spend": null });
        assert!(matches(&[("Country", IsEmpty, "")], p.clone()));
        assert!(matches(&[("LastPurchase", IsEmpty, "")], p.clone()));
        assert!(matches(&[("Country", NotEquals, "Germany")], p.clone()));
        assert!(!matches(&[("Spend", GreaterThan, "0")], p.clone()));
        assert!(!matches(&[("Spend", LessThan, "100")], p.clone()));
        assert!(!matches(
            &[("LastPurchase", Before, "2030-01-01")],
            p.clone()
        ));
        assert!(!matches(&[("Country", Contains, "a")], p));
    }

    #[test]
    fn all_needs_every_condition_and_any_needs_one() {
        let conditions = [
            ("Country", Operator::Equals, "Germany"),
            ("Spend", Operator::GreaterThan, "5000"),
        ];
        let p = json!({ "Country": "Germany", "Spend": 10 });
        let catalogue = catalogue();
        assert!(
            !rules(Match::All, &conditions)
                .compile(&catalogue)
                .unwrap()
                .matches(p.as_object().unwrap())
        );
        assert!(
            rules(Match::Any, &conditions)
                .compile(&catalogue)
                .unwrap()
                .matches(p.as_object().unwrap())
        );
    }

    #[test]
    fn rules_are_checked_against_the_catalogue() {
        use Operator::*;
        let errors = rules(
            Match::All,
            &[
                ("Nope", Equals, "x"),
                ("Country", GreaterThan, "3"),
                ("Spend", GreaterThan, "lots"),
                ("LastPurchase", Before, "yesterday"),
                ("Country", Equals, " "),
            ],
        )
        .compile(&catalogue())
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "Condition 1: there is no profile field “Nope”.",
                "Condition 2: text fields cannot use “is greater than”.",
                "Condition 3: \"lots\" is not a number.",
                "Condition 4: \"yesterday\" is not a date (YYYY-MM-DD).",
                "Condition 5: enter a value for Country.",
            ]
        );
        assert_eq!(
            rules(Match::All, &[]).compile(&catalogue()).unwrap_err(),
            ["Add at least one condition."]
        );
    }

    #[test]
    fn each_refusal_names_its_condition_and_the_part_at_fault() {
        use Operator::*;
        let errors = rules(
            Match::All,
            &[
                ("Country", Equals, "x"),
                ("Nope", Equals, "x"),
                ("Spend", Before, "2026-01-01"),
                ("Spend", GreaterThan, "lots"),
                ("Country", Equals, ""),
            ],
        )
        .check(&catalogue())
        .unwrap_err();
        let at: Vec<_> = errors.iter().map(|e| (e.condition, e.part)).collect();
        assert_eq!(
            at,
            [
                (Some(1), RulePart::Field),
                (Some(2), RulePart::Operator),
                (Some(3), RulePart::Value),
                (Some(4), RulePart::Value),
            ]
        );
        assert_eq!(
            errors[2].to_string(),
            "Condition 4: \"lots\" is not a number."
        );
    }

    #[test]
    fn a_segment_takes_at_most_so_many_conditions() {
        let many = vec![("Country", Operator::Equals, "x"); MAX_CONDITIONS + 1];
        let errors = rules(Match::Any, &many).check(&catalogue()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].condition, errors[0].part),
            (None, RulePart::Conditions)
        );
        assert!(
            errors[0].to_string().contains("at most 100"),
            "{}",
            errors[0]
        );
        assert!(
            rules(Match::Any, &many[..MAX_CONDITIONS])
                .check(&catalogue())
                .is_ok()
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let r = rules(Match::Any, &[("Country", Operator::Equals, "Germany")]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<SegmentRules>(&text).unwrap(), r);
        assert!(text.contains("\"match\":\"any\""));
    }
}
