"""Convert an official checkpoint, write the Hub folder (weights, config, model card) and upload it.

    python scripts/publish.py CHECKPOINT --format psa-nvidia --tag cityscapes \
        --repo-id ORG/hrnetv2_w48_ocr_psa_p.cityscapes

``--dry-run`` writes the folder (``--out``) and stops before uploading. Then record the repository id
and the sha256 printed here in the tag's configuration (``psa_zoo/models/zoo.py``) with status
"published".
"""

import argparse
import sys
import tempfile

from psa_zoo.convert.checkpoints import FORMATS, convert_checkpoint
from psa_zoo.models._download import WEIGHTS_NAME, file_sha256
from psa_zoo.publish import upload_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--tag", required=True, help="pretrained tag the upload becomes")
    parser.add_argument("--arch", help="registered model name (default: inferred from the checkpoint)")
    parser.add_argument("--repo-id", help="Hub repository to upload to (required unless --dry-run)")
    parser.add_argument("--out", help="folder to write (default: a temporary one)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="write the folder, do not upload")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("--repo-id is required unless --dry-run")
    out = args.out or tempfile.mkdtemp(prefix="psa_zoo_publish_")
    folder = convert_checkpoint(
        args.checkpoint, args.format, out, arch=args.arch, tag=args.tag, overwrite=args.overwrite
    )
    print(f"folder: {folder}\nsha256 of {WEIGHTS_NAME}: {file_sha256(folder / WEIGHTS_NAME)}")
    if not args.dry_run:
        print(f"uploaded: {upload_folder(folder, args.repo_id, private=args.private or None)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
