from uniego.cli import main

raise SystemExit(main())
