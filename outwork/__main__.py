from outwork.cli import main

main()
