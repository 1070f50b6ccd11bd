from embtool.cli import run

run()
