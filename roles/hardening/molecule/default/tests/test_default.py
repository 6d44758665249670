"""The hardening role's real state in a container: effective sshd settings (sshd -T), audit rules rendered and
compiled, nftables file checked by nft, TLS files with their modes."""

import pytest

INSTANCE = "molecule-hardening"


@pytest.mark.parametrize("name", ["openssh-server", "auditd", "nftables"])
def test_package_installed(host, name):
    assert host.package(name).is_installed


def sshd_t(host):
    return dict(line.split(" ", 1) for line in host.check_output("/usr/sbin/sshd -T").splitlines() if " " in line)


def test_sshd_effective_settings(host):
    eff = sshd_t(host)
    assert eff["passwordauthentication"] == "no"
    assert eff["kbdinteractiveauthentication"] == "no"
    assert eff["permitemptypasswords"] == "no"
    assert eff["pubkeyauthentication"] == "yes"
    assert eff["authenticationmethods"] == "publickey"
    assert eff["permitrootlogin"] in ("prohibit-password", "without-password")
    assert eff["x11forwarding"] == "no"
    assert eff["maxauthtries"] == "3"
    assert eff["loglevel"] == "VERBOSE"
    assert eff["ciphers"].split(",") == ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                                         "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]
    assert eff["macs"].split(",") == ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                                      "umac-128-etm@openssh.com"]
    assert eff["kexalgorithms"].split(",")[0] == "sntrup761x25519-sha512@openssh.com"
    assert not {"hmac-sha1", "diffie-hellman-group14-sha256", "ecdh-sha2-nistp256"} & set(
        eff["macs"].split(",") + eff["kexalgorithms"].split(","))


def test_sshd_dropin_and_service(host):
    f = host.file("/etc/ssh/sshd_config.d/00-baremetal-ai.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert host.run("/usr/sbin/sshd -t").rc == 0
    ssh = host.service("ssh")
    assert ssh.is_running and ssh.is_enabled
    # sshd reloaded: the running daemon answers with the hardened algorithms
    banner = host.run("python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', 22), 5); "
                      "print(s.recv(64).decode())\"")
    assert banner.stdout.startswith("SSH-2.0-OpenSSH")


def test_sshd_offers_only_hardened_kex(host):
    # a client that insists on a removed algorithm is refused by the running sshd
    if not host.exists("ssh"):
        pytest.skip("no ssh client in the node image")
    out = host.run("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o KexAlgorithms=diffie-hellman-group14-sha1 "
                   "-p 22 nobody@127.0.0.1 true")
    assert out.rc != 0 and "no matching key exchange method" in out.stderr


def test_audit_rules(host):
    f = host.file("/etc/audit/rules.d/baremetal.rules")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o640)
    text = f.content_string
    assert "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged" in text
    assert "-a always,exit -F path=/usr/bin/su -F perm=x -F auid>=1000 -F auid!=unset -k privileged" in text
    # setuid binaries found on the node (passwd is setuid root on Debian)
    assert "-F path=/usr/bin/passwd -F perm=x" in text
    assert "-a always,exit -F arch=b64 -S execve -C uid!=euid -F euid=0 -k setuid" in text
    for watch in ("-w /etc/ssh/ -p wa -k sshd_config", "-w /etc/sudoers -p wa -k sudoers",
                  "-w /etc/sudoers.d/ -p wa -k sudoers", "-w /etc/modprobe.d/ -p wa -k modprobe",
                  "-w /etc/nccl.conf -p wa -k nccl_config", "-w /etc/baremetal-ai/ -p wa -k baremetal_ai"):
        assert watch in text
    assert "-e 2" not in text
    # augenrules compiled them into audit.rules (loading needs the host kernel's audit: not in a container)
    assert "-k privileged" in host.file("/etc/audit/audit.rules").content_string


def test_auditd_conf(host):
    text = host.file("/etc/audit/auditd.conf").content_string
    assert "max_log_file = 64" in text and "num_logs = 10" in text
    assert host.file("/etc/audit/auditd.conf").mode == 0o640


def test_nftables_conf_checked_not_applied(host):
    f = host.file("/etc/nftables.conf")
    assert (f.user, f.mode) == ("root", 0o755)
    text = f.content_string
    assert "flush ruleset" not in text.split("#")[0]
    assert "policy drop;" in text
    assert "ip saddr @mgmt_sources_v4 tcp dport 22 accept" in text
    assert "elements = { 192.0.2.0/24 }" in text and "elements = { 2001:db8::/32 }" in text
    assert "tcp dport { 9100, 9400 } accept" in text
    assert 'iifname "eth1" udp dport { 4791 } accept' in text
    assert 'iifname "eth1" accept comment "trusted interface"' in text
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0
    # not applied in a container (the lab's own traffic would be filtered)
    assert not host.service("nftables").is_enabled
    assert host.run("nft list table inet baremetal_ai").rc != 0


def test_tls_files(host):
    d = host.file("/etc/baremetal-ai/tls")
    assert (d.user, d.group, d.mode) == ("root", "root", 0o750)
    key = host.file("/etc/baremetal-ai/tls/node.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o400)
    assert "MOLECULE-ONLY-NOT-A-KEY" in key.content_string
    crt = host.file("/etc/baremetal-ai/tls/node.crt")
    assert (crt.user, crt.mode) == ("root", 0o644)
