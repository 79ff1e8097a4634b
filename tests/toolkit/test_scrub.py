"""The one secret scrubber shared by synthesis, the judge and the Hub clients."""

from toolkit.scrub import describe_error, scrub


def test_scrub_masks_given_secrets_and_token_shapes():
    text = "key=k3y-Value Authorization: Bearer abc.def sk-proj-ABCDEFGH12345678 hf_AbCdEfGhIjKlMnOpQrSt1234"
    cleaned = scrub(text, ["k3y-Value", None, ""])
    for secret in ("k3y-Value", "abc.def", "ABCDEFGH", "AbCdEfGh"):
        assert secret not in cleaned
    assert cleaned.count("***") == 4 and cleaned.startswith("key=*** Authorization: Bearer ***")


def test_describe_error_names_the_type_and_scrubs_the_message():
    error = RuntimeError("401: invalid key 'k3y-Value'")
    assert describe_error(error, ["k3y-Value"]) == "RuntimeError: 401: invalid key '***'"
