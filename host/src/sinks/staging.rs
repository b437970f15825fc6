//! Output staged by a checkpoint epoch: which source partition a sink instance stages for,
//! and where staged objects live. Only committed epochs' output is ever published from there.

/// Which partition's output a sink instance stages; it names the staging folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
}

impl Scope {
    /// `topic-partition`, safe as a file or key name.
    pub fn label(&self) -> String {
        format!(
            "{}-{}",
            crate::checkpoint::safe_name(&self.topic),
            self.partition
        )
    }
}

/// Folder under a table's root holding staged objects; readers skip names starting with `_`.
pub const STAGING_DIR: &str = "_staging";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_safe_names() {
        let scope = Scope {
            topic: "a/b".into(),
            partition: 3,
        };
        assert_eq!(scope.label(), "a_b-3");
    }
}
