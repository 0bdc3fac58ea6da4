#!/usr/bin/env python3
"""Generate the CAN databases of the simulated racks: configs/bmu-demo.dbc
(the demo rack) and configs/bmu-416.dbc (a 416-cell rack).

This script is the documentation of the layout; edit it and re-run instead
of editing a DBC by hand:

  python3 configs/gen_bmu_dbc.py                 # configs/bmu-demo.dbc
  python3 configs/gen_bmu_dbc.py --modules 26 --out configs/bmu-416.dbc

Python 3 standard library only. Output is deterministic, LF line endings.

Rack: N battery-management units (BMU0..BMU{N-1}; the demo has N = 8, the
416-cell rack N = 26), 16 cells and 4 temperature sensors each, one host
(BMS) and one Isabellenhuette IVT-S style shunt (IVT). Signal names are the
same for every N, so the `[can.signals]` templates of configs/demo-site.toml
fit every file.

Layout (all standard 11-bit ids, Intel = little-endian unless noted). The
temperature and balance id bases depend on the layout (`--layout`, chosen
from the module count unless given):

  layout   modules  temperature  balance   used by
  compact  1..16    0x310+m      0x400+m   bmu-demo.dbc (8 modules)
  wide     1..64    0x340+m      0x420+m   bmu-416.dbc (26 modules)

(compact: 0x300+m would reach 0x310 and 0x400+m would reach the status id
0x410 at m = 16; wide keeps every range apart up to the 64 modules the
host accepts: 0x300..0x33F, 0x340..0x37F, 0x410, 0x420..0x45F, 0x521..0x523.)

  0x300+m  BMU{m}_CellVoltage  8 B  BMU{m} -> BMS  multiplexed
           BMU{m}_VoltMux      M    0|4  unsigned    group g = 0..3
           BMU{m}_VoltAlive         4|4  unsigned alive counter: +1 per
                                    send period, the same in all 4 pages
           BMU{m}_Cell{c:02}_mV m{g} 8/22/36/50|14 unsigned, 1 mV/bit,
                                     cells c = 4g..4g+3, [0|8000] mV
  T+m      BMU{m}_Temperature  8 B  BMU{m} -> BMS    (T: 0x310 / 0x340)
           BMU{m}_Temp{s}      0/16/32/48|16 SIGNED, 0.1 degC/bit,
                               s = 0..3, [-40|125] degC
  B+m      BMS_Balance{m}      2 B  BMS -> BMU{m}    (B: 0x400 / 0x420)
           BMU{m}_BleedMask    0|16 unsigned, bit c = cell c bleeds
  0x410    BMS_Status          1 B  BMS -> all BMUs
           BMS_Alive           0|8  unsigned alive counter, wraps at 255
  0x521    IVT_Current         7 B  IVT -> BMS  (Motorola / big-endian)
           IVT_MuxID           7|8  unsigned (byte 0; 0x00 on the IVT-S)
           IVT_Current_Count   15|4 unsigned (high nibble of byte 1), +1
                                    per frame, as the IVT-S message count
           IVT_Current_mA      23|32 SIGNED (bytes 2..5), [-2000000|2000000]
           IVT_Current_CRC     55|8 unsigned (byte 6): CRC-8/SAE-J1850
  0x522    IVT_Voltage         7 B  IVT -> BMS  (Motorola / big-endian)
           IVT_Voltage_Count   15|4, IVT_Voltage_CRC 55|8 (as above)
           IVT_Voltage_mV      23|32 SIGNED (bytes 2..5), [0|2000000]
  0x523    IVT_LinkVoltage     7 B  IVT -> BMS  (Motorola / big-endian)
           IVT_LinkVoltage_Count 15|4, IVT_LinkVoltage_CRC 55|8
           IVT_LinkVoltage_mV  23|32 SIGNED (bytes 2..5), [0|2000000]

End-to-end protection (the host's `[[can.e2e]]`): the BMUs' alive counter
catches a gateway repeating a cached frame; the IVT frames carry a counter
and a CRC byte. A real IVT-S sends 6 bytes with the counter but no CRC;
byte 6 is this simulated sensor's addition. The CRC is CRC-8/SAE-J1850
(poly 0x1D, init 0xFF, xorout 0xFF) over the identifier, 2 bytes
little-endian, then every data byte but the CRC byte (bms_can::e2e).

Send periods (GenMsgCycleTime, ms): BMU frames 100, IVT frames 20, host
frames 100. The host supervises each inbound message against its period.

Motorola start bits are the MSB in DBC sawtooth numbering: bit 23 is the
most significant bit of byte 2, so a 32-bit value there fills bytes 2..5.

Bus load at 500 kbit/s (standard frames, worst-case bit stuffing, every
frame above at its period): the demo rack puts 64 frames on the bus per
100 ms (~16 %), the 416-cell rack 172 (~44 %). Give every 416-cell rack a
bus of its own; two on one bus (with an id offset) would need ~87 %.
"""

import argparse
from pathlib import Path

MODULES = 8
CELLS_PER_MODULE = 16
CELLS_PER_GROUP = 4
TEMPS_PER_MODULE = 4

CELL_VOLTAGE_BASE = 0x300
STATUS_ID = 0x410
IVT_CURRENT_ID = 0x521
IVT_VOLTAGE_ID = 0x522
IVT_LINK_VOLTAGE_ID = 0x523

# layout -> (most modules, temperature base, balance base)
LAYOUTS = {
    "compact": (16, 0x310, 0x400),
    "wide": (64, 0x340, 0x420),
}

BMU_PERIOD_MS = 100
IVT_PERIOD_MS = 20
HOST_PERIOD_MS = 100

CELL_START_BITS = (8, 22, 36, 50)
CELL_BITS = 14
TEMP_START_BITS = (0, 16, 32, 48)

NEW_SYMBOLS = [
    "NS_DESC_", "CM_", "BA_DEF_", "BA_", "VAL_", "CAT_DEF_", "CAT_",
    "FILTER", "BA_DEF_DEF_", "EV_DATA_", "ENVVAR_DATA_", "SGTYPE_",
    "SGTYPE_VAL_", "BA_DEF_SGTYPE_", "BA_SGTYPE_", "SIG_TYPE_REF_",
    "VAL_TABLE_", "SIG_GROUP_", "SIG_VALTYPE_", "SIGTYPE_VALTYPE_",
    "BO_TX_BU_", "BA_DEF_REL_", "BA_REL_", "BA_DEF_DEF_REL_", "BU_SG_REL_",
    "BU_EV_REL_", "BU_BO_REL_", "SG_MUL_VAL_",
]


def fmt_num(x):
    """DBC number: integers without a decimal point, others shortest repr."""
    if float(x).is_integer():
        return str(int(x))
    return repr(float(x))


def signal(name, start, size, intel, signed, factor, offset, lo, hi, unit,
           receivers, mux=""):
    mux_part = f" {mux}" if mux else ""
    order = "1" if intel else "0"
    sign = "-" if signed else "+"
    return (
        f" SG_ {name}{mux_part} : {start}|{size}@{order}{sign} "
        f"({fmt_num(factor)},{fmt_num(offset)}) "
        f"[{fmt_num(lo)}|{fmt_num(hi)}] \"{unit}\" {','.join(receivers)}"
    )


def message(msg_id, name, size, transmitter, signals):
    return [f"BO_ {msg_id} {name}: {size} {transmitter}", *signals, ""]


def default_layout(modules):
    return "compact" if modules <= LAYOUTS["compact"][0] else "wide"


def build(modules=MODULES, layout=None, version="bmu-demo"):
    layout = layout or default_layout(modules)
    max_modules, temperature_base, balance_base = LAYOUTS[layout]
    if not 1 <= modules <= max_modules:
        raise ValueError(
            f"layout {layout} holds 1..{max_modules} modules, got {modules}")
    if version == "bmu-demo":
        description = "Demo rack"
    else:
        description = f"{modules * CELLS_PER_MODULE}-cell rack"
    bmus = [f"BMU{m}" for m in range(modules)]
    lines = [
        f'VERSION "{version} 1"',
        "",
        "NS_ :",
        *(f"\t{s}" for s in NEW_SYMBOLS),
        "",
        "BS_:",
        "",
        "BU_: " + " ".join(bmus + ["BMS", "IVT"]),
        "",
    ]
    comments = [
        f'CM_ "{description}: {modules} BMUs x {CELLS_PER_MODULE} cells x '
        f'{TEMPS_PER_MODULE} temperature sensors, one '
        'IVT-S style current sensor. Generated by configs/gen_bmu_dbc.py; '
        'do not edit by hand.";',
        'CM_ BU_ BMS "Battery-management host (bmshost).";',
        'CM_ BU_ IVT "Shunt current/voltage sensor, IVT-S style, '
        'big-endian values.";',
    ]

    for m in range(modules):
        bmu = f"BMU{m}"
        groups = CELLS_PER_MODULE // CELLS_PER_GROUP
        sigs = [signal(f"{bmu}_VoltMux", 0, 4, True, False, 1, 0, 0,
                       groups - 1, "", ["BMS"], mux="M"),
                signal(f"{bmu}_VoltAlive", 4, 4, True, False, 1, 0, 0, 15,
                       "", ["BMS"])]
        for g in range(groups):
            for k, start in enumerate(CELL_START_BITS):
                c = g * CELLS_PER_GROUP + k
                sigs.append(signal(f"{bmu}_Cell{c:02}_mV", start, CELL_BITS,
                                   True, False, 1, 0, 0, 8000, "mV", ["BMS"],
                                   mux=f"m{g}"))
        msg_id = CELL_VOLTAGE_BASE + m
        lines += message(msg_id, f"{bmu}_CellVoltage", 8, bmu, sigs)
        comments.append(
            f'CM_ BO_ {msg_id} "Cell voltages of {bmu}; {bmu}_VoltMux = g '
            f'carries cells 4g..4g+3.";')

    for m in range(modules):
        bmu = f"BMU{m}"
        sigs = [
            signal(f"{bmu}_Temp{s}", start, 16, True, True, 0.1, 0, -40, 125,
                   "degC", ["BMS"])
            for s, start in enumerate(TEMP_START_BITS)
        ]
        msg_id = temperature_base + m
        lines += message(msg_id, f"{bmu}_Temperature", 8, bmu, sigs)
        comments.append(
            f'CM_ BO_ {msg_id} "Module temperatures of {bmu}, 0.1 degC '
            f'per bit.";')

    for m in range(modules):
        bmu = f"BMU{m}"
        msg_id = balance_base + m
        lines += message(msg_id, f"BMS_Balance{m}", 2, "BMS", [
            signal(f"{bmu}_BleedMask", 0, 16, True, False, 1, 0, 0, 65535,
                   "", [bmu]),
        ])
        comments.append(
            f'CM_ SG_ {msg_id} {bmu}_BleedMask "Passive balancing command: '
            f'bit c set = bleed cell c of {bmu}.";')

    lines += message(STATUS_ID, "BMS_Status", 1, "BMS", [
        signal("BMS_Alive", 0, 8, True, False, 1, 0, 0, 255, "",
               bmus),
    ])
    comments.append(
        f'CM_ SG_ {STATUS_ID} BMS_Alive "Host alive counter: BMUs stop '
        f'balancing when it stops counting.";')

    def ivt(msg_id, name, value, lo, extra=()):
        return message(msg_id, name, 7, "IVT", [
            *extra,
            signal(f"{name}_Count", 15, 4, False, False, 1, 0, 0, 15, "",
                   ["BMS"]),
            signal(value, 23, 32, False, True, 1, 0, lo, 2000000, "mV"
                   if value.endswith("_mV") else "mA", ["BMS"]),
            signal(f"{name}_CRC", 55, 8, False, False, 1, 0, 0, 255, "",
                   ["BMS"]),
        ])

    lines += ivt(IVT_CURRENT_ID, "IVT_Current", "IVT_Current_mA", -2000000,
                 extra=[signal("IVT_MuxID", 7, 8, False, False, 1, 0, 0, 255,
                               "", ["BMS"])])
    lines += ivt(IVT_VOLTAGE_ID, "IVT_Voltage", "IVT_Voltage_mV", 0)
    lines += ivt(IVT_LINK_VOLTAGE_ID, "IVT_LinkVoltage", "IVT_LinkVoltage_mV",
                 0)
    comments += [
        f'CM_ BO_ {IVT_CURRENT_ID} "IVT-S result frame: byte 0 mux id, '
        f'byte 1 message count (high nibble), bytes 2..5 current, '
        f'big-endian, signed, 1 mA per bit, byte 6 CRC-8/SAE-J1850.";',
        f'CM_ BO_ {IVT_VOLTAGE_ID} "IVT-S result frame: bytes 2..5 voltage '
        f'U1, big-endian, signed, 1 mV per bit.";',
        f'CM_ BO_ {IVT_LINK_VOLTAGE_ID} "IVT-S result frame: bytes 2..5 voltage '
        f'U2 (DC link, behind the contactors), big-endian, signed, 1 mV per bit.";',
    ]

    lines += comments
    periods = (
        [(CELL_VOLTAGE_BASE + m, BMU_PERIOD_MS) for m in range(modules)]
        + [(temperature_base + m, BMU_PERIOD_MS) for m in range(modules)]
        + [(balance_base + m, HOST_PERIOD_MS) for m in range(modules)]
        + [(STATUS_ID, HOST_PERIOD_MS)]
        + [(i, IVT_PERIOD_MS) for i in (IVT_CURRENT_ID, IVT_VOLTAGE_ID,
                                          IVT_LINK_VOLTAGE_ID)]
    )
    ids = [i for i, _ in periods]
    if len(set(ids)) != len(ids) or max(ids) > 0x7FF:
        raise AssertionError(f"message ids collide or exceed 11 bits: {ids}")
    lines += [
        'BA_DEF_ BO_ "GenMsgCycleTime" INT 0 65535;',
        'BA_DEF_DEF_ "GenMsgCycleTime" 0;',
        *(f'BA_ "GenMsgCycleTime" BO_ {i} {p};' for i, p in periods),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(
        description="Generate a BMU rack DBC (see the module docstring for "
        "the layout).")
    ap.add_argument("--modules", type=int, default=MODULES,
                    help=f"number of BMUs of {CELLS_PER_MODULE} cells "
                    f"(default {MODULES}, the demo rack)")
    ap.add_argument("--layout", choices=sorted(LAYOUTS),
                    help="id layout (default: compact up to 16 modules, "
                    "wide above)")
    ap.add_argument("--out", type=Path, default=here / "bmu-demo.dbc",
                    help="output file (default configs/bmu-demo.dbc)")
    ap.add_argument("--version-name",
                    help="DBC VERSION name (default: the output file's stem)")
    args = ap.parse_args(argv)
    out = args.out
    try:
        text = build(args.modules, args.layout, args.version_name or out.stem)
    except ValueError as e:
        ap.error(str(e))
    out.write_text(text, encoding="ascii", newline="\n")
    print(f"wrote {out.resolve()}")


if __name__ == "__main__":
    main()
