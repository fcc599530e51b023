"""`outpost diagnose`: checks, runner, report, and Azure's region DNS data.

Agent-facing API: ``diagnostics.runner.run_checks(Options) -> list[CheckResult]`` and
``diagnostics.report.post_results(client, results)``.
"""
