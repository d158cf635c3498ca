from mixsync_dagster.cli import main

main()
