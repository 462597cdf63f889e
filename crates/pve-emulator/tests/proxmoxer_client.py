"""Drives pve-emulator with proxmoxer, a widely used Python client of the
Proxmox VE API, as inventory and monitoring scripts do. Run by
python_client.rs, which starts the emulator and reads the JSON printed here.

Environment: EMU_HOST (host:port), EMU_CA (CA file), EMU_TOKEN
(USER@REALM!NAME=SECRET), EMU_PASSWORD (root@pam), EMU_VMID (a running CT),
EMU_VM (a free VMID for a VM made here).
"""
import json
import os

from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

host = os.environ["EMU_HOST"]
ca = os.environ["EMU_CA"]
user_token, secret = os.environ["EMU_TOKEN"].split("=", 1)
user, token_name = user_token.split("!", 1)
vmid = int(os.environ["EMU_VMID"])

# API token, the certificate checked against the emulator's CA.
px = ProxmoxAPI(host, user=user, token_name=token_name, token_value=secret, verify_ssl=ca)
out = {
    "version": px.version.get(),
    "nodes": px.nodes.get(),
    "cluster_status": px.cluster.status.get(),
    "resources_vm": px.cluster.resources.get(type="vm"),
    "resources_storage": px.cluster.resources.get(type="storage"),
}
node_name = out["nodes"][0]["node"]
node = px.nodes(node_name)
out["node_status"] = node.status.get()
out["cts"] = node.lxc.get()
out["current"] = node.lxc(vmid).status.current.get()
out["pending"] = node.lxc(vmid).pending.get()
out["rrddata"] = node.lxc(vmid).rrddata.get(timeframe="hour", cf="AVERAGE")
out["storage_status"] = node.storage("local").status.get()
out["storage_content"] = node.storage("local").content.get(content="vztmpl")
out["tasks"] = node.tasks.get(typefilter="vzstart", vmid=vmid)

# A ticket (root@pam, password): a write needs the CSRF token proxmoxer sends.
root = ProxmoxAPI(host, user="root@pam", password=os.environ["EMU_PASSWORD"], verify_ssl=ca)
root.nodes(node_name).lxc(vmid).config.put(description="set by proxmoxer")
out["description"] = root.nodes(node_name).lxc(vmid).config.get()["description"]

# A task through proxmoxer's own waiting helper.
upid = node.lxc(vmid).status.stop.post()
out["stop"] = Tasks.blocking_status(px, upid, timeout=60, polling_interval=0.2)
out["after_stop"] = node.lxc(vmid).status.current.get()["status"]

# A VM and its firewall (port security), as a runtime sets them up.
vm = int(os.environ["EMU_VM"])
upid = node.qemu.post(vmid=vm, memory=128, net0="virtio=BC:24:11:00:00:42,bridge=vmbr0,firewall=1")
out["vm_create"] = Tasks.blocking_status(px, upid, timeout=60, polling_interval=0.2)
fw = node.qemu(vm).firewall
fw.options.put(enable=1, ipfilter=1, macfilter=1)
fw.ipset.post(name="ipfilter-net0", comment="lease")
fw.ipset("ipfilter-net0").post(cidr="10.9.9.7")
out["vm_fw_options"] = fw.options.get()
out["vm_ipset"] = fw.ipset("ipfilter-net0").get()
upid = node.qemu(vm).delete(purge=1)
out["vm_destroy"] = Tasks.blocking_status(px, upid, timeout=60, polling_interval=0.2)

# Errors arrive as proxmoxer's exception, with Proxmox's status and message.
try:
    node.lxc(999999999).status.current.get()
    out["missing"] = None
except ResourceException as e:
    out["missing"] = {"status": e.status_code, "content": e.content}
try:
    node.lxc(vmid).rrddata.get(timeframe="fortnight")
    out["bad_param"] = None
except ResourceException as e:
    out["bad_param"] = {"status": e.status_code, "errors": e.errors}

print(json.dumps(out))
