from dcx_runbook.cli.app import main

main()
