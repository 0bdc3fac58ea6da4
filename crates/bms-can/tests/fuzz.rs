//! Fuzz targets (bolero): the DBC parser and the frame codec take any
//! bytes without panicking. `cargo test` runs each for a second of random
//! inputs; `cargo xtask fuzz --seconds N` runs them longer and reports the
//! executions.

use std::sync::atomic::{AtomicU64, Ordering};

use bms_can::dbc::Dbc;
use bms_can::e2e::E2eProfile;
use bms_can::{CanFrame, CanId};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/bmu-demo.dbc");

fn report(target: &str, runs: &AtomicU64) {
    println!(
        "fuzz target {target}: {} executions",
        runs.load(Ordering::Relaxed)
    );
}

#[test]
fn fuzz_dbc_parse() {
    let runs = AtomicU64::new(0);
    // Seeded with a real file so the inputs get past the first keyword.
    let seed = std::fs::read(DEMO).unwrap();
    bolero::check!().for_each(|bytes: &[u8]| {
        runs.fetch_add(1, Ordering::Relaxed);
        let _ = Dbc::parse(bytes, "fuzz.dbc");
        // A real file cut somewhere, with the input spliced in.
        let cut = bytes
            .first()
            .map_or(0, |b| usize::from(*b) * seed.len() / 256);
        let mut text = seed[..cut].to_vec();
        text.extend_from_slice(bytes);
        if let Ok(d) = Dbc::parse(&text, "fuzz.dbc") {
            for m in d.messages() {
                let _ = m.decode(&[0u8; 8][..usize::from(m.size_bytes).min(8)]);
            }
        }
    });
    report("dbc_parse", &runs);
}

#[test]
fn fuzz_frame_decode() {
    let dbc = Dbc::from_file(DEMO).unwrap();
    let profiles: Vec<Option<E2eProfile>> = dbc
        .messages()
        .iter()
        .map(|m| {
            let named = |end: &str| {
                m.signals
                    .iter()
                    .find(|s| s.name.ends_with(end))
                    .map(|s| s.name.as_str())
            };
            let counter = named("Count").or(named("Alive"));
            E2eProfile::new(m, counter, named("CRC"), 3).ok()
        })
        .collect();
    let runs = AtomicU64::new(0);
    bolero::check!()
        .with_type::<(u16, Vec<u8>, Option<u16>)>()
        .for_each(|(id, data, last)| {
            runs.fetch_add(1, Ordering::Relaxed);
            let Ok(id) = CanId::standard(*id) else {
                return;
            };
            let Ok(frame) = CanFrame::new(id, data) else {
                assert!(data.len() > 8, "a classic-size frame was refused");
                return;
            };
            let Some(i) = dbc.message_index_by_id(frame.id()) else {
                return;
            };
            let m = dbc.message_at(i);
            match m.decode(frame.data()) {
                Ok(values) => {
                    for v in values {
                        let s = &m.signals[v.signal];
                        assert_eq!(v.in_range, s.in_range(v.value), "{}", s.name);
                    }
                }
                Err(_) => assert_ne!(frame.len(), usize::from(m.size_bytes)),
            }
            if let (Some(p), true) = (&profiles[i], frame.len() == usize::from(m.size_bytes)) {
                let mut last = *last;
                let _ = p.check(m, frame.id(), frame.data(), &mut last);
            }
        });
    report("frame_decode", &runs);
}
