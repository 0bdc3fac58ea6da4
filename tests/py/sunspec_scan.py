#!/usr/bin/env python3
"""Scan a SunSpec device over Modbus TCP with pysunspec2 and print what an
EMS would see, as JSON.  sunspec_scan.py HOST PORT UNIT"""
import json
import sys

import sunspec2.modbus.client as client

host, port, unit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = client.SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr=host, ipport=port, timeout=5)
d.scan()
out = {"models": sorted(k for k in d.models if isinstance(k, int))}
b = d.models[802][0]
for p in ("SoC", "SoH", "CellVMax", "CellVMaxStr", "CellVMaxMod", "CellVMin", "AChaMax",
          "ADisChaMax", "A", "V", "State", "ChaSt", "Evt1", "Typ", "AHRtg"):
    out[p] = b.points[p].cvalue
m1 = d.models[1][0]
out["Mn"] = m1.points["Mn"].cvalue
bank = d.models[803][0]
out["NStr"] = bank.points["NStr"].cvalue
out["NStrCon"] = bank.points["NStrCon"].cvalue
for p in ("StrSoC", "StrSt", "StrA", "StrEvt1"):
    out[p] = [s.points[p].cvalue for s in bank.groups["string"]]
d.close()
print(json.dumps(out))
