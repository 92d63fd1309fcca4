"""The runtimes that predict with a model, one module per model format (`model.predictors` picks
one): a compiled form with numpy alone (`compiled`), a scikit-learn DictVectorizer pipeline
(`pipeline`), any other model with `predict` of feature dicts, an MLflow pyfunc among them
(`records`)."""
