"""Aggregate-auth (``<config-auth>``) XML, parsed safely (sans-I/O).

The AnyConnect client and the gateway exchange these documents in the bodies of the authentication
POSTs (``X-Aggregate-Auth: 1``) and in the ``X-CSTP-Post-Auth-XML`` header of the CONNECT answer.
Their shape, from the openconnect protocol draft, openconnect's auth.c, ocserv's worker-auth.c and
published ASA exchanges::

    client → gateway                              gateway → client
    <config-auth client="vpn" type="init"         <config-auth client="vpn" type="auth-request"
        aggregate-auth-version="2">                   aggregate-auth-version="2">
      <version who="vpn">5.1.2.42</version>         <version who="sg">9.16(3)</version>
      <device-id platform-version=… unique-id=…>    <opaque is-for="sg">
        linux-64</device-id>                          <tunnel-group>…</tunnel-group>
      <mac-address-list>…</mac-address-list>          <aggauth-handle>…</aggauth-handle>
      <group-select>…</group-select>                  <auth-method>…</auth-method>
      <group-access>https://vpn…</group-access>       <group-alias>…</group-alias>
      <capabilities><auth-method>…</…>                <config-hash>…</config-hash>
    </config-auth>                                  </opaque>
                                                    <auth id="main"> <title/> <message/> <banner/>
    type="auth-reply": <opaque> echoed verbatim,      <error id=… param1=…>…</error>
      <auth><username/><password/></auth>,            <form method="post" action="/auth">
      <group-select>, <host-scan-token>                 <input type="text|password|hidden" name= label=/>
                                                        <select name="group_list" label=…>
                                                          <option value=… selected="true">…</option>
    type="complete": <session-id>, <session-token> (the webvpn cookie), <auth id="success">,
      <capabilities>, <config client="vpn" type="private"> with <vpn-base-config>
      (<server-cert-hash>, <base-package-uri>), <vpn-core-manifest>, <vpn-profile-manifest>
      (<vpn rev="1.0"><file type="profile" service-type="user"><uri/><hash type="sha1"/></file>).

Safety: the input is hostile until proven otherwise.  It is size-bounded (``max_bytes``, 1 MiB by
default), any ``<!DOCTYPE`` or ``<!ENTITY`` is refused before lxml sees the data (billion laughs,
external entities, external DTDs), and lxml runs with ``resolve_entities=False, no_network=True,
load_dtd=False, huge_tree=False``.  Errors are returned as :class:`AggAuthError` values, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

__all__ = [
    "DEFAULT_MAX_XML_BYTES",
    "AggAuthError",
    "Auth",
    "ConfigAuth",
    "DeviceId",
    "Form",
    "FormField",
    "FormOption",
    "ManifestFile",
    "Message",
    "Opaque",
    "Version",
    "VpnConfig",
    "looks_like_config_auth",
    "parse_config_auth",
    "parse_post_auth_xml",
    "safe_parse",
]

DEFAULT_MAX_XML_BYTES = 1024 * 1024

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AggAuthError:
    """Why a document was not parsed.

    ``kind``: ``"empty"``, ``"too-large"``, ``"doctype"`` (a DOCTYPE or ENTITY declaration: refused,
    never resolved), ``"entity"`` (an entity reference), ``"malformed"``, ``"unexpected-root"``.
    """

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Version:
    who: str | None
    text: str


@dataclass(frozen=True, slots=True)
class DeviceId:
    """``<device-id>``: the text is the platform (``linux-64``, ``win``, ``mac-intel``…)."""

    platform: str | None
    platform_version: str | None = None
    device_type: str | None = None
    unique_id: str | None = None
    unique_id_global: str | None = None
    computer_name: str | None = None
    attrs: Pairs = ()


@dataclass(frozen=True, slots=True)
class Opaque:
    """``<opaque is-for="sg">``: server data the client echoes verbatim; ``xml`` is its serialisation."""

    is_for: str | None
    xml: str
    tunnel_group: str | None = None
    aggauth_handle: str | None = None
    group_alias: str | None = None
    config_hash: str | None = None
    auth_methods: tuple[str, ...] = ()
    fields: Pairs = ()


@dataclass(frozen=True, slots=True)
class Message:
    """``<message>`` or ``<error>``: ``text`` may hold ``%s`` placeholders filled by ``param1``/``param2``."""

    id: str | None
    params: tuple[str, ...]
    text: str

    @property
    def formatted(self) -> str:
        out = self.text
        for p in self.params:
            if "%s" not in out:
                break
            out = out.replace("%s", p, 1)
        return out


@dataclass(frozen=True, slots=True)
class FormOption:
    value: str
    label: str
    selected: bool = False
    attrs: Pairs = ()


@dataclass(frozen=True, slots=True)
class FormField:
    """An ``<input>`` (``type`` text/password/hidden/…) or a ``<select>`` (``type`` is ``"select"``)."""

    type: str | None
    name: str | None
    label: str | None
    value: str | None = None
    options: tuple[FormOption, ...] = ()

    @property
    def selected(self) -> FormOption | None:
        """The option marked ``selected="true"``, else the first one (what a client shows)."""
        for opt in self.options:
            if opt.selected:
                return opt
        return self.options[0] if self.options else None


@dataclass(frozen=True, slots=True)
class Form:
    method: str | None
    action: str | None
    fields: tuple[FormField, ...] = ()

    def field(self, name: str) -> FormField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class Auth:
    """``<auth id=…>``.  In a client's auth-reply, ``values`` holds what was typed (username, password…)."""

    id: str | None
    title: str | None = None
    message: Message | None = None
    banner: str | None = None
    error: Message | None = None
    form: Form | None = None
    values: Pairs = ()


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """A ``<file>`` of a vpn-core-, vpn-profile- or vpn-customization-manifest."""

    type: str | None
    uri: str | None
    hash_type: str | None = None
    hash: str | None = None
    service_type: str | None = None
    version: str | None = None
    id: str | None = None
    display_name: str | None = None
    filename: str | None = None
    attrs: Pairs = ()


@dataclass(frozen=True, slots=True)
class VpnConfig:
    """``<config client="vpn" type="private">`` of a ``complete`` answer."""

    client: str | None
    type: str | None
    server_cert_hash: str | None = None
    base_package_uri: str | None = None
    pkg_version: str | None = None
    core_manifest: tuple[ManifestFile, ...] = ()
    profile_manifest: tuple[ManifestFile, ...] = ()
    customization_manifest: tuple[ManifestFile, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigAuth:
    """One parsed ``<config-auth>`` document (or a legacy bare ``<auth>``, ``root == "auth"``)."""

    root: str
    client: str | None
    type: str | None
    aggregate_auth_version: str | None = None
    versions: tuple[Version, ...] = ()
    device_id: DeviceId | None = None
    group_access: str | None = None
    group_select: str | None = None
    opaque: Opaque | None = None
    auth: Auth | None = None
    session_id: str | None = None
    session_token: str | None = None
    config: VpnConfig | None = None
    capabilities: Pairs = ()
    mac_addresses: tuple[str, ...] = ()
    host_scan: Pairs = ()
    host_scan_token: str | None = None
    client_cert_request: bool = False
    client_cert_fail: bool = False
    other: tuple[str, ...] = ()

    def version(self, who: str) -> str | None:
        """The ``<version who=…>`` text of ``"vpn"`` (client) or ``"sg"`` (secure gateway)."""
        for v in self.versions:
            if v.who == who:
                return v.text
        return None

    @property
    def group_list(self) -> FormField | None:
        """The ``<select name="group_list">`` of an auth-request form."""
        if self.auth and self.auth.form:
            return self.auth.form.field("group_list")
        return None


# -- safe parsing -----------------------------------------------------------------------------------

_FORBIDDEN = (b"<!doctype", b"<!entity")


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _declares_dtd(raw: bytes) -> bool:
    lowered = raw.lower()
    if any(tok in lowered for tok in _FORBIDDEN):
        return True
    # UTF-16/32 documents: look again at the decoded text
    head = raw[:4]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
        for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
            try:
                text = raw.decode(enc).lower()
            except UnicodeDecodeError:
                continue
            if "<!doctype" in text or "<!entity" in text:
                return True
    return False


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           dtd_validation=False, attribute_defaults=False, collect_ids=False,
                           remove_comments=True, remove_pis=True)


def safe_parse(data: bytes | str, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> etree._Element | AggAuthError:
    """Parse untrusted XML into an lxml element, or explain why not (see module docstring)."""
    raw = _as_bytes(data)
    if not raw.strip():
        return AggAuthError("empty", "empty XML document")
    if len(raw) > max_bytes:
        return AggAuthError("too-large", f"XML document of {len(raw)} bytes exceeds the {max_bytes}-byte bound")
    if _declares_dtd(raw):
        return AggAuthError("doctype", "XML with a DOCTYPE or ENTITY declaration is refused "
                                       "(entities and DTDs are never loaded or expanded)")
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        return AggAuthError("malformed", f"malformed XML: {exc}")
    except ValueError as exc:  # e.g. unsupported encoding declarations
        return AggAuthError("malformed", f"malformed XML: {exc}")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        return AggAuthError("doctype", "XML with a DOCTYPE declaration is refused")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            return AggAuthError("entity", f"entity reference {node.text!r} is refused")
    return root


def looks_like_config_auth(body: bytes | str) -> bool:
    """Cheap test: does this body start like an aggregate-auth document?"""
    head = _as_bytes(body[:1024]).lstrip().lower()
    return b"<config-auth" in head or head.startswith(b"<?xml") and b"<auth" in head


# -- tree → dataclasses ---------------------------------------------------------------------------

def _name(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return etree.QName(tag).localname if tag.startswith("{") else tag


def _children(el: etree._Element):
    for child in el:
        if isinstance(child.tag, str):
            yield child


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return "".join(el.itertext()).strip()


def _child(el: etree._Element, name: str) -> etree._Element | None:
    for child in _children(el):
        if _name(child) == name:
            return child
    return None


def _child_text(el: etree._Element, name: str) -> str | None:
    return _text(_child(el, name))


def _attrs(el: etree._Element) -> Pairs:
    return tuple((str(k), str(v)) for k, v in el.attrib.items())


def _message(el: etree._Element) -> Message:
    params = tuple(el.get(f"param{i}") or "" for i in (1, 2) if el.get(f"param{i}") is not None)
    return Message(el.get("id"), params, _text(el) or "")


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _form(el: etree._Element) -> Form:
    fields = []
    for child in _children(el):
        name = _name(child)
        if name == "input":
            fields.append(FormField(child.get("type"), child.get("name"), child.get("label"), child.get("value")))
        elif name == "select":
            options = []
            for opt in _children(child):
                if _name(opt) != "option":
                    continue
                label = _text(opt) or ""
                value = opt.get("value")
                options.append(FormOption(value if value is not None else label, label,
                                          _is_true(opt.get("selected")), _attrs(opt)))
            fields.append(FormField("select", child.get("name"), child.get("label"), None, tuple(options)))
    return Form(el.get("method"), el.get("action"), tuple(fields))


_AUTH_STRUCTURE = {"title", "message", "banner", "error", "form"}


def _auth(el: etree._Element) -> Auth:
    title = message = banner = error = form = None
    values = []
    for child in _children(el):
        name = _name(child)
        if name == "title":
            title = _text(child)
        elif name == "message":
            message = _message(child)
        elif name == "banner":
            banner = _text(child)
        elif name == "error":
            error = _message(child)
        elif name == "form":
            form = _form(child)
        else:
            values.append((name, _text(child) or ""))
    return Auth(el.get("id"), title, message, banner, error, form, tuple(values))


def _opaque(el: etree._Element) -> Opaque:
    fields = tuple((_name(c), _text(c) or "") for c in _children(el))
    xml = etree.tostring(el, encoding="unicode", with_tail=False)
    return Opaque(
        is_for=el.get("is-for"),
        xml=xml,
        tunnel_group=_child_text(el, "tunnel-group"),
        aggauth_handle=_child_text(el, "aggauth-handle"),
        group_alias=_child_text(el, "group-alias"),
        config_hash=_child_text(el, "config-hash"),
        auth_methods=tuple(v for k, v in fields if k == "auth-method"),
        fields=fields,
    )


def _manifest(el: etree._Element | None) -> tuple[ManifestFile, ...]:
    if el is None:
        return ()
    files = []
    for f in el.iter():
        if _name(f) != "file":
            continue
        hash_el = _child(f, "hash")
        files.append(ManifestFile(
            type=f.get("type"),
            uri=_child_text(f, "uri"),
            hash_type=hash_el.get("type") if hash_el is not None else None,
            hash=_text(hash_el),
            service_type=f.get("service-type"),
            version=f.get("version"),
            id=f.get("id"),
            display_name=_child_text(f, "display-name"),
            filename=_child_text(f, "filename"),
            attrs=_attrs(f),
        ))
    return tuple(files)


def _first(el: etree._Element, name: str) -> etree._Element | None:
    for node in el.iter():
        if _name(node) == name:
            return node
    return None


def _config(el: etree._Element) -> VpnConfig:
    return VpnConfig(
        client=el.get("client"),
        type=el.get("type"),
        server_cert_hash=_text(_first(el, "server-cert-hash")),
        base_package_uri=_text(_first(el, "base-package-uri")),
        pkg_version=_text(_first(el, "pkgversion")),
        core_manifest=_manifest(_first(el, "vpn-core-manifest")),
        profile_manifest=_manifest(_first(el, "vpn-profile-manifest")),
        customization_manifest=_manifest(_first(el, "vpn-customization-manifest")),
    )


def _device_id(el: etree._Element) -> DeviceId:
    return DeviceId(
        platform=_text(el) or None,
        platform_version=el.get("platform-version"),
        device_type=el.get("device-type"),
        unique_id=el.get("unique-id"),
        unique_id_global=el.get("unique-id-global"),
        computer_name=el.get("computer-name"),
        attrs=_attrs(el),
    )


def _config_auth(root: etree._Element) -> ConfigAuth:
    if _name(root) == "auth":  # legacy / "v3" ocserv answer: a bare <auth>
        return ConfigAuth(root="auth", client=None, type=None, auth=_auth(root))
    fields: dict[str, object] = {}
    versions: list[Version] = []
    other: list[str] = []
    for child in _children(root):
        name = _name(child)
        if name == "version":
            versions.append(Version(child.get("who"), _text(child) or ""))
        elif name == "device-id":
            fields["device_id"] = _device_id(child)
        elif name in ("group-access", "group-select", "session-id", "session-token", "host-scan-token"):
            fields[name.replace("-", "_")] = _text(child)
        elif name == "opaque":
            fields["opaque"] = _opaque(child)
        elif name == "auth":
            fields["auth"] = _auth(child)
        elif name == "config":
            fields["config"] = _config(child)
        elif name == "capabilities":
            fields["capabilities"] = tuple((_name(c), _text(c) or "") for c in _children(child))
        elif name == "mac-address-list":
            fields["mac_addresses"] = tuple(_text(c) or "" for c in _children(child))
        elif name == "host-scan":
            fields["host_scan"] = tuple((_name(c), _text(c) or "") for c in _children(child))
        elif name == "client-cert-request":
            fields["client_cert_request"] = True
        elif name == "client-cert-fail":
            fields["client_cert_fail"] = True
        else:
            other.append(name)
    return ConfigAuth(
        root="config-auth",
        client=root.get("client"),
        type=root.get("type"),
        aggregate_auth_version=root.get("aggregate-auth-version"),
        versions=tuple(versions),
        other=tuple(other),
        **fields,  # type: ignore[arg-type]
    )


def parse_config_auth(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> ConfigAuth | AggAuthError:
    """Parse one aggregate-auth document (a POST body, an answer body)."""
    root = safe_parse(data, max_bytes)
    if isinstance(root, AggAuthError):
        return root
    if _name(root) not in ("config-auth", "auth"):
        return AggAuthError("unexpected-root", f"root element is <{_name(root)}>, not <config-auth>")
    return _config_auth(root)


def parse_post_auth_xml(header_value: str | bytes, *,
                        max_bytes: int = DEFAULT_MAX_XML_BYTES) -> ConfigAuth | AggAuthError:
    """Parse the value of an ``X-CSTP-Post-Auth-XML`` header (a whole config-auth on one line)."""
    value = header_value.strip() if isinstance(header_value, (str, bytes)) else header_value
    if not value:
        return AggAuthError("empty", "empty X-CSTP-Post-Auth-XML")
    return parse_config_auth(value, max_bytes=max_bytes)
