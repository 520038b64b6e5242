//! What `/status` serves: JSON sections (`lanes`, `chains`, `operator`, …) the relay's tasks
//! publish as they learn them, so a request never waits on a chain.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

/// Named JSON sections, replaced whole on every update.
#[derive(Debug, Default)]
pub struct StatusBoard {
    sections: Mutex<BTreeMap<String, Value>>,
}

impl StatusBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace section `key`.
    pub fn set(&self, key: &str, value: Value) {
        self.sections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), value);
    }

    /// Replace entry `entry` inside object section `key` (created if missing).
    pub fn set_entry(&self, key: &str, entry: &str, value: Value) {
        let mut sections = self.sections.lock().unwrap_or_else(|p| p.into_inner());
        let section = sections
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !section.is_object() {
            *section = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(map) = section {
            map.insert(entry.to_owned(), value);
        }
    }

    /// Every section as one JSON object.
    pub fn snapshot(&self) -> Value {
        let sections = self.sections.lock().unwrap_or_else(|p| p.into_inner());
        Value::Object(sections.clone().into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_entries_compose_one_object() {
        let board = StatusBoard::new();
        board.set("operator", Value::from("0xabc"));
        board.set_entry(
            "lanes",
            "main-to-service",
            serde_json::json!({"pending": 3}),
        );
        board.set_entry(
            "lanes",
            "service-to-main",
            serde_json::json!({"pending": 0}),
        );
        board.set_entry(
            "lanes",
            "main-to-service",
            serde_json::json!({"pending": 1}),
        );
        assert_eq!(
            board.snapshot(),
            serde_json::json!({
                "operator": "0xabc",
                "lanes": {"main-to-service": {"pending": 1}, "service-to-main": {"pending": 0}}
            })
        );
    }
}
