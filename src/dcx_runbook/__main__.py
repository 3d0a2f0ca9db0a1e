from dcx_runbook.cli import main

main()
