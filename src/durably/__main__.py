from durably.cli.main import app

app()
