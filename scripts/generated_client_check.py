"""A client generated from Warden's OpenAPI document (openapi-python-client,
written to $PYTHONPATH/client by scripts/openapi-fuzz.sh) creates an
organization, a project, writes a secret and reads it back."""

import os
import secrets
import sys

from client import AuthenticatedClient
from client.api.default import (
    get_api_v1_secret_scope,
    post_api_v1_scopes,
    put_api_v1_secrets_scope,
)
from client.models import CreateOrganization, CreateProject, PutSecrets, PutSecretsValues


def main() -> int:
    api = AuthenticatedClient(
        base_url=os.environ["WARDEN_URL"],
        token=os.environ["WARDEN_TOKEN"],
        verify_ssl=os.environ["SSL_CERT_FILE"],
        raise_on_unexpected_status=True,
    )
    org = "gen-" + secrets.token_hex(4)
    for body in (
        CreateOrganization(kind="organization", path=org),
        CreateProject(kind="project", path=f"{org}/shop"),
    ):
        made = post_api_v1_scopes.sync(client=api, body=body)
        assert getattr(made, "path", None) == body.path, f"creating {body.path}: {made}"
    value = "v-" + secrets.token_hex(8)
    values = PutSecretsValues.from_dict({"API_KEY": value})
    written = put_api_v1_secrets_scope.sync(f"{org}/shop", client=api, body=PutSecrets(values=values))
    assert hasattr(written, "written") and written.written[0].version == 1, written
    read = get_api_v1_secret_scope.sync(f"{org}/shop", client=api, key="API_KEY")
    assert hasattr(read, "value") and read.value == value and read.meta.version == 1, read
    print(f"generated client: created {org}/shop, wrote and read API_KEY (version {read.meta.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
