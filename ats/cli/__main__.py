from ats.cli import main

main()
