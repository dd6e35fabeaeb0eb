from stash_vision.adapter.app import main

raise SystemExit(main())
