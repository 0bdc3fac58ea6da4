#!/usr/bin/env python3
"""A PCS simulator for the PCS-link test: a pymodbus TCP server with 1000
holding registers the host writes its limits into; the test reads them
back over Modbus.  pcs_sim.py PORT"""
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartTcpServer

port = int(sys.argv[1])
# The device context adds 1 to request addresses (pymodbus convention).
store = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 1000))
StartTcpServer(context=ModbusServerContext(devices=store, single=True), address=("127.0.0.1", port))
