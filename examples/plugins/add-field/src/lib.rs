//! Adds the field `name` with the string `value` (both from the stage config) to every event.

use weir_sdk::{Config, Context, Event, Needs, Transform};

/// The transform: which field to set, and to what.
pub struct AddField(String, String);

impl Transform for AddField {
    fn init(config: &Config) -> Result<Self, String> {
        let name = config.get("name").ok_or("config `name` is required")?;
        Ok(AddField(
            name.to_string(),
            config.get("value").unwrap_or("").to_string(),
        ))
    }

    /// It reads nothing of the event, so the host hands it no field.
    fn needs(&self) -> Needs {
        Needs::fields(&[])
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        event.set_str(&self.0, &self.1);
        ctx.emit(&event);
    }
}

weir_sdk::export_transform!(AddField);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::TestHarness;

    use super::AddField;

    #[test]
    fn adds_the_field() {
        let mut h = TestHarness::<AddField>::new(&[("name", "env"), ("value", "prod")]).unwrap();
        let out = h.process_one("u1", 0, json!({"user_id": "u1"}));
        assert_eq!(out[0].value, json!({"user_id": "u1", "env": "prod"}));
        assert!(TestHarness::<AddField>::new(&[]).is_err());
    }
}
