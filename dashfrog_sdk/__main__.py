"""`python -m dashfrog_sdk` is the `dashfrog` command."""

from dashfrog_sdk._entry import main

if __name__ == "__main__":
    main()
