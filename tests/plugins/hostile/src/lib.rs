//! A test plugin that misbehaves on request, to prove the host isolates failures: a record
//! whose `action` is `trap` panics, `spin` loops forever, `hog` allocates without bound,
//! `recurse` overflows the stack, `flood` emits 64 copies of a 64 KiB value, `timers` sets
//! timers until the host stops it, `hoard` stores ever more state, `dead-letter` is
//! dead-lettered by the plugin itself, `sandbox` reports what of the environment, filesystem
//! and network it can reach, `log` logs a line through the host, and anything else is emitted
//! with `"seen": true`. `on_timer` traps for keys starting with `trap`.

use weir_sdk::{Config, Context, Event, Level, Transform};

/// The misbehaving transform.
pub struct Hostile;

impl Transform for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        if config.get("fail_init").is_some() {
            return Err("init refused: fail_init is set".into());
        }
        Ok(Hostile)
    }

    #[expect(clippy::panic, reason = "this plugin traps on purpose")]
    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        match event.get_str("action").as_deref() {
            Some("trap") => panic!("hostile plugin asked to trap"),
            Some("spin") => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Some("hog") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("recurse") => {
                ctx.counter("depth", depth(std::hint::black_box(1)));
            }
            Some("flood") => {
                let big = Event::new(format!("{{\"pad\":\"{}\"}}", "x".repeat(64 << 10)), 0);
                for _ in 0..64 {
                    ctx.emit(&big);
                }
            }
            Some("timers") => {
                for at in 0..10_000_000 {
                    ctx.set_timer(event.key(), at);
                }
                ctx.emit(&event);
            }
            Some("hoard") => {
                let block = vec![7u8; 64 << 10];
                for i in 0..1_000_000u32 {
                    ctx.set_state(event.key(), &format!("block-{i}"), &block);
                }
                ctx.emit(&event);
            }
            Some("dead-letter") => ctx.dead_letter("asked to dead-letter", &event),
            Some("log") => {
                ctx.log(Level::Info, "hostile plugin says hello");
                ctx.emit(&event);
            }
            Some("sandbox") => {
                // What a plugin can reach of the outside world: all of it should be denied.
                event.set_i64("env_vars", std::env::vars().count() as i64);
                event.set_bool(
                    "fs_read",
                    std::fs::read_dir("/").is_ok() || std::fs::read_dir(".").is_ok(),
                );
                event.set_bool("fs_write", std::fs::write("escape.txt", b"x").is_ok());
                event.set_bool("net", std::net::TcpStream::connect("127.0.0.1:9").is_ok());
                println!("stdout goes nowhere");
                eprintln!("stderr goes nowhere");
                ctx.emit(&event);
            }
            Some("timer") => {
                let at = event.time() + 1_000;
                ctx.set_timer(event.key(), at);
                ctx.emit(&event);
            }
            _ => {
                let count: u64 = ctx.state(event.key(), "count").unwrap_or(0) + 1;
                ctx.set_state(event.key(), "count", &count);
                event.set_bool("seen", true);
                event.set_i64("count", count as i64);
                ctx.emit(&event);
            }
        }
    }

    #[expect(clippy::panic, reason = "this plugin traps on purpose")]
    fn on_timer(&mut self, key: &[u8], at: i64, ctx: &mut Context<'_>) {
        if key.starts_with(b"trap") {
            panic!("hostile timer asked to trap");
        }
        let summary = Event::new(format!("{{\"timer\":{at}}}"), at);
        ctx.route("timers", &summary);
    }
}

weir_sdk::export_transform!(Hostile);

/// Recursion the optimizer cannot turn into a loop: it overflows the stack.
#[expect(
    unconditional_recursion,
    reason = "this plugin overflows its stack on purpose"
)]
fn depth(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    depth(frame[(n % 64) as usize] + 1) + frame[0]
}
