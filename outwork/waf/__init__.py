"""The WAF: a SecLang engine that runs the OWASP Core Rule Set (issue 11)."""
