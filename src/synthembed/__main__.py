from synthembed.cli import main

raise SystemExit(main())
