from thpreplay.cli import main

main()
