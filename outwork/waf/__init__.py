"""The WAF: a SecLang engine that runs the OWASP Core Rule Set (issue 11) as published.

`seclang` reads rule files into `rules` (the model), `engine` runs them over a `request`
(`variables` computes what a rule reads), and `crs/` holds the vendored CRS (Apache-2.0).
`transforms`, `operators` and `patterns` are the matchers.
"""
