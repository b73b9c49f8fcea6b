"""Downloads of stored files (evidence photos, return labels), always through the scoping gate.

Uploaded files are never served as public media: a URL must not be enough to see another tenant's
evidence. Images open inline; labels download as PDF.
"""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404

from aftersales.selectors import evidence_file_for_user
from logistics.selectors import label_file_for_user


def _send(file, *, content_type: str, filename: str, attachment: bool) -> FileResponse:
    response = FileResponse(file.open("rb"), content_type=content_type, as_attachment=attachment, filename=filename)
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
def evidence_file(request, evidence_id):
    evidence = evidence_file_for_user(request.user, evidence_id)
    if evidence is None:
        raise Http404
    return _send(evidence.file, content_type=evidence.content_type or "application/octet-stream",
                 filename=evidence.file.name.rsplit("/", 1)[-1], attachment=False)


@login_required
def return_label(request, label_id):
    label = label_file_for_user(request.user, label_id)
    if label is None:
        raise Http404
    return _send(label.file, content_type="application/pdf",
                 filename=f"return-label-{label.ticket.return_id}.pdf", attachment=True)
