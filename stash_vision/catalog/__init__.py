"""Model catalog (model_repository/*/catalog.yaml + config.pbtxt) and the weight fetcher."""
