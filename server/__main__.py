from stash_vision.server.app import main

raise SystemExit(main())
