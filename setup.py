"""Build glue for the one C extension (everything else is in setup.cfg).

poolsniff/_fastpath.c holds the batch path's per-record loops (pcap record index,
L2-L4 header pass). It is optional: without a C compiler the install still works
and poolsniff/batch.py does the same work with numpy, more slowly.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("poolsniff._fastpath", ["poolsniff/_fastpath.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c99", "-Wall"])])
