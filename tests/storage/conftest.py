import pytest

# contract.py is not a test module, so ask pytest to rewrite its asserts for readable failures.
pytest.register_assert_rewrite("tests.storage.contract")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
