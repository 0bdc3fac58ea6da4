//! Cross-check of the host's DBC codec against an independent one,
//! `cantools` (PyPI), on a foreign DBC with multiplexing, Motorola and
//! Intel signals, signed values, extended ids, a Latin-1 file and a long
//! signal name. Values go both ways: cantools encodes, the host decodes;
//! the host encodes, cantools decodes.
//!
//! `cargo xtask test` provides a Python with cantools (`target/pyenv`, from
//! `tests/py/requirements.txt`) through `BMS_PYTHON`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bms_e2e::workspace_root;
use bmshost::io::can::dbc::{Dbc, MuxRole};
use bmshost::io::can::CanId;
use rand::{Rng, SeedableRng};

const DBCS: [&str; 3] = [
    "tests/fixtures/foreign-bmu.dbc",
    "configs/bmu-demo.dbc",
    "configs/bmu-416.dbc",
];

fn script() -> PathBuf {
    workspace_root().join("tests/py/cantools_xcheck.py")
}

/// Physical values agree to well below one raw step.
fn close(a: f64, b: f64, factor: f64) -> bool {
    (a - b).abs() <= factor.abs() * 1e-3 + 1e-9 * a.abs().max(1.0)
}

#[test]
fn frames_encoded_by_cantools_decode_identically_in_the_host() {
    let py = bms_e2e::python(&["cantools"]);
    for rel in DBCS {
        let path = workspace_root().join(rel);
        let dbc = Dbc::from_file(&path).unwrap();
        let out = Command::new(&py)
            .arg(script())
            .args(["encode"])
            .arg(&path)
            .args(["7", "200"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let frames: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(frames.len() >= 200, "{rel}");
        let mut checked = 0;
        for f in &frames {
            let id = CanId::new(
                f["id"].as_u64().unwrap() as u32,
                f["extended"].as_bool().unwrap(),
            )
            .unwrap();
            let msg = dbc
                .message_by_id(id)
                .unwrap_or_else(|| panic!("{rel}: host lacks {id}"));
            let data: Vec<u8> = (0..f["data"].as_str().unwrap().len() / 2)
                .map(|i| {
                    u8::from_str_radix(&f["data"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap()
                })
                .collect();
            let decoded = msg.decode(&data).unwrap();
            for (name, want) in f["values"].as_object().unwrap() {
                // cantools uses the long name where the DBC has one.
                let r = dbc
                    .find_signal(name)
                    .unwrap_or_else(|| panic!("{rel}: no signal {name}"));
                let sig = dbc.signal(r);
                let got = decoded
                    .iter()
                    .find(|v| v.signal == r.signal)
                    .unwrap_or_else(|| panic!("{rel} {}: {name} not decoded", msg.name));
                let want = want.as_f64().unwrap();
                assert!(
                    close(got.value, want, sig.factor),
                    "{rel} {} {name}: host {} vs cantools {want} (data {})",
                    msg.name,
                    got.value,
                    f["data"]
                );
                checked += 1;
            }
        }
        assert!(checked > 500, "{rel}: only {checked} values compared");
    }
}

#[test]
fn frames_encoded_by_the_host_decode_identically_in_cantools() {
    let py = bms_e2e::python(&["cantools"]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for rel in DBCS {
        let path = workspace_root().join(rel);
        let dbc = Dbc::from_file(&path).unwrap();
        let mut frames = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..200 {
            for msg in dbc.messages() {
                let groups: Vec<u64> = msg
                    .signals
                    .iter()
                    .filter_map(|s| match s.mux {
                        MuxRole::Multiplexed(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                let group = (!groups.is_empty()).then(|| groups[rng.gen_range(0..groups.len())]);
                let mut values = Vec::new();
                for (i, s) in msg.signals.iter().enumerate() {
                    let raw = match s.mux {
                        MuxRole::Multiplexor => group.unwrap(),
                        MuxRole::Multiplexed(v) if Some(v) != group => continue,
                        _ => {
                            let mask = if s.size_bits == 64 {
                                u64::MAX
                            } else {
                                (1u64 << s.size_bits) - 1
                            };
                            rng.gen::<u64>() & mask
                        }
                    };
                    values.push((i, s.raw_to_physical(raw)));
                }
                let data = msg.encode(&values).unwrap();
                let (id, extended) = match msg.id {
                    CanId::Standard(id) => (u32::from(id), false),
                    CanId::Extended(id) => (id, true),
                };
                frames.push(serde_json::json!({
                    "id": id,
                    "extended": extended,
                    "data": data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                }));
                expected.push((msg.name.clone(), values));
            }
        }
        let mut child = Command::new(&py)
            .arg(script())
            .arg("decode")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&frames).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(decoded.len(), expected.len());
        for (d, (name, values)) in decoded.iter().zip(&expected) {
            let msg = dbc.message(name).unwrap();
            let got = d["values"].as_object().unwrap();
            for (i, want) in values {
                let s = &msg.signals[*i];
                // cantools reports the long name where there is one.
                let value = got
                    .iter()
                    .find(|(k, _)| {
                        dbc.find_signal(k).is_some_and(|r| {
                            r.signal == *i && dbc.message_at(r.message).name == *name
                        })
                    })
                    .map(|(_, v)| v.as_f64().unwrap())
                    .unwrap_or_else(|| panic!("{rel} {name}: cantools did not decode {}", s.name));
                assert!(
                    close(value, *want, s.factor),
                    "{rel} {name} {}: cantools {value} vs host {want}",
                    s.name
                );
            }
        }
    }
}

#[test]
fn the_foreign_dbc_loads_with_its_quirks() {
    let dbc = Dbc::from_file(workspace_root().join(DBCS[0])).unwrap();
    // Extended ids, Motorola signed, multiplexed groups, unused messages.
    let cells = dbc.message("BMU_CellVoltages").unwrap();
    assert_eq!(cells.id, CanId::Extended(0x1000));
    assert!(cells.multiplexor.is_some());
    let t = dbc.signal(dbc.resolve_signal("Module_Temp_1").unwrap());
    assert!(t.signed);
    assert!(dbc.message("VendorDiag_Unused").is_some());
    // The long name and the 32-character DBC name reach the same signal.
    let long = dbc
        .resolve_signal("BMU_Heartbeat_Counter_For_Redundant_Supervision_Channel_B")
        .unwrap();
    assert_eq!(
        long,
        dbc.resolve_signal("BMU_HeartbeatCounter_RedundSupB")
            .unwrap()
    );
    // A missing name is an error naming the DBC and the name.
    let err = dbc.resolve_signal("Cell_V_Z").unwrap_err().to_string();
    assert!(
        err.contains("Cell_V_Z") && err.contains("foreign-bmu.dbc"),
        "{err}"
    );
}
