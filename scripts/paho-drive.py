# paho-drive.py SCRIPT PORT runs one Eclipse Paho interoperability suite
# against the broker on 127.0.0.1:PORT, from the suite's directory. The
# suites read -p themselves but hand sys.argv on to unittest, which refuses
# it. Used by scripts/paho-suite.sh and broker's TestPahoSuitesCluster.
import os, runpy, sys, unittest
script, port = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
_main = unittest.main
unittest.main = lambda *a, **k: _main(*a, **dict(k, argv=[script]))
sys.argv = [script, "-p", port]
runpy.run_path(script, run_name="__main__")
