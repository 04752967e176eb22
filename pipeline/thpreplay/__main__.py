from thpreplay._entry import main

main()
