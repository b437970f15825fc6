//! A plugin of the first contract, `weir:transform@0.1.0` (its WIT is kept in `wit/` here):
//! it passes every record through. The host runs `weir:transform@0.2.0` and must refuse it at
//! load, naming both versions, so an old build fails loudly instead of misbehaving.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "transform", path: "wit" });

    struct Legacy;

    impl Guest for Legacy {
        fn init(_config: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }

        fn process(batch: Batch) -> BatchResult {
            BatchResult {
                outputs: Vec::new(),
                values: batch.values,
                value_ends: Vec::new(),
            }
        }

        fn on_timer(_key: Vec<u8>, _at: i64) -> BatchResult {
            BatchResult {
                outputs: Vec::new(),
                values: Vec::new(),
                value_ends: Vec::new(),
            }
        }
    }

    export!(Legacy);
}
