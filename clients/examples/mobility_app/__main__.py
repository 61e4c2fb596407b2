from clients.examples.mobility_app.app import main

raise SystemExit(main())
