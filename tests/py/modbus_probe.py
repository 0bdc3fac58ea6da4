#!/usr/bin/env python3
"""Raw Modbus requests against the host with pymodbus, reporting exception
codes as JSON.  modbus_probe.py HOST PORT UNIT OP ADDRESS [VALUE...]
OP: read N | write V..."""
import json
import sys

from pymodbus.client import ModbusTcpClient

host, port, unit, op, addr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
c = ModbusTcpClient(host, port=port, timeout=5)
if not c.connect():
    sys.exit("cannot connect")
if op == "read":
    r = c.read_holding_registers(addr, count=int(sys.argv[6]), device_id=unit)
else:
    vals = [int(v) for v in sys.argv[6:]]
    r = c.write_registers(addr, vals, device_id=unit)
c.close()
if r.isError():
    print(json.dumps({"exception": getattr(r, "exception_code", None)}))
else:
    print(json.dumps({"ok": True, "registers": getattr(r, "registers", None)}))
