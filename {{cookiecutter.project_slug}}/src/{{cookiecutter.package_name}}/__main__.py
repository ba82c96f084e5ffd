"""`python -m {{ cookiecutter.package_name }}` and the `{{ cookiecutter.project_slug }}` command.

The CLI is imported inside `entry()`: Ctrl-C while its imports still load (a second or so on a
cold start) exits 130 without a traceback, as it does once a command runs.
"""


def entry() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    entry()
