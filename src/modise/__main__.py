from modise.cli import main

main()
