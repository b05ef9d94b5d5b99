from jessl.cli import main

raise SystemExit(main())
