"""A minimal Redfish client for the lab's own needs (power state and reset), on plain `requests`.

The user-facing Redfish provider (pulumi/) uses the `sushy` library; this module only serves the lab's
power bridge, which polls often and must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from baremetal_ai.errors import UserError


@dataclass
class Bmc:
    endpoint: str  # https://127.0.0.1:8000
    username: str
    password: str
    ca_file: str
    timeout: float = 5.0

    def __post_init__(self) -> None:
        self._s = requests.Session()
        self._s.auth = (self.username, self.password)
        # verify is passed on every request: a Session attribute loses to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
        # in the environment (requests merges environment settings over it), and the lab CA would be ignored.

    def _url(self, path: str) -> str:
        return self.endpoint.rstrip("/") + path

    def get(self, path: str) -> dict:
        r = self._s.get(self._url(path), timeout=self.timeout, verify=self.ca_file)
        if r.status_code in (401, 403):
            raise UserError(f"BMC {self.endpoint} refused the credentials (HTTP {r.status_code}) for {path}")
        if r.status_code == 404:
            raise UserError(f"BMC {self.endpoint} has no resource {path} (HTTP 404)")
        r.raise_for_status()
        return r.json()

    def power_state(self, system_id: str) -> str:
        return str(self.get(f"/redfish/v1/Systems/{system_id}").get("PowerState", "Unknown"))

    def reset(self, system_id: str, reset_type: str) -> None:
        r = self._s.post(self._url(f"/redfish/v1/Systems/{system_id}/Actions/ComputerSystem.Reset"),
                         json={"ResetType": reset_type}, timeout=self.timeout, verify=self.ca_file)
        if r.status_code >= 400:
            raise UserError(f"BMC {self.endpoint}: reset {reset_type} of {system_id} failed "
                            f"(HTTP {r.status_code})")

    def ready(self) -> bool:
        try:
            r = self._s.get(self._url("/redfish/v1/Systems"), timeout=self.timeout, verify=self.ca_file)
            return r.status_code == 200
        except requests.RequestException:
            return False
