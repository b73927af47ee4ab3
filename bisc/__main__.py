from bisc.cli import main

raise SystemExit(main())
