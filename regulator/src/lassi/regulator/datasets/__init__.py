"""Image sources with labelled attributes: built-in 3D Shapes, CelebA, any folder + CSV.

All share one small interface (:class:`ImageSource`, in :mod:`.source`) used by Glow training,
attribute vectors and the producer: sample ids per split, integer attribute labels, and uint8
images [N, H, W, 3] at the source's ``image_size``. Problems with user data raise
:class:`DataError`, whose message is a single line naming the file or folder and what is wrong
with it. One module per layout (:mod:`.shapes3d`, :mod:`.celeba`, :mod:`.folder`; DeepMind's
file and FairFace in ``lassi.regulator.shapes3d_h5`` and ``lassi.regulator.fairface``); the
public names are imported from here.

Data on disk is read under three rules, because its listings may come from another party:

* **Confined reads** (:mod:`.file_source`). Every file a listing names is read inside the data
  root: names with a ``..`` component or an absolute name are refused when the listing is
  parsed (before any image is opened), and each path is resolved again when it is read
  (:meth:`FileImageSource.path_of`), so a symbolic link leading out of the root, even one
  swapped in after parsing, is refused too, unless the user opts in for a link farm
  (``--allow-symlinks-outside-root``).
* **Bounded memory** (:mod:`.listings`, :mod:`.images`). Listings are streamed with a bound on
  the length of a line (:data:`MAX_LINE_BYTES`), of a field (:data:`MAX_NAME_CHARS`) and on the
  number of rows (:data:`MAX_ROWS`) and label cells (:data:`MAX_CELLS`); an image's header is
  read before its pixels and an image of more than :func:`max_pixels` pixels is refused
  undecoded.
* **Bounded labels** (:mod:`.folder`). A folder CSV's labels are class indices: integers in
  ``0..n-1`` where ``n`` is the number of distinct values present (at least 2, at most
  ``lassi.spec.contract.models.MAX_CLASSES``); a CSV with gaps or huge values is refused, never
  widened into empty classes.
"""

from lassi.regulator.datasets.celeba import CELEBA_LAYOUTS, CelebASource
from lassi.regulator.datasets.file_source import (
    SYMLINK_OPT_IN,
    FileImageSource,
    lexically_inside,
    name_problem,
)
from lassi.regulator.datasets.folder import FolderSource
from lassi.regulator.datasets.images import RESAMPLING, decode_image, load_image, max_pixels
from lassi.regulator.datasets.listings import (
    MAX_CELLS,
    MAX_COLUMNS,
    MAX_LINE_BYTES,
    MAX_NAME_CHARS,
    MAX_ROWS,
)
from lassi.regulator.datasets.shapes3d import Shapes3DFactors, Shapes3DSource
from lassi.regulator.datasets.source import (
    SPLITS,
    DataError,
    ImageSource,
    OutsideRootError,
    binary_split,
)

__all__ = [
    "CELEBA_LAYOUTS",
    "MAX_CELLS",
    "MAX_COLUMNS",
    "MAX_LINE_BYTES",
    "MAX_NAME_CHARS",
    "MAX_ROWS",
    "RESAMPLING",
    "SPLITS",
    "SYMLINK_OPT_IN",
    "CelebASource",
    "DataError",
    "FileImageSource",
    "FolderSource",
    "ImageSource",
    "OutsideRootError",
    "Shapes3DFactors",
    "Shapes3DSource",
    "binary_split",
    "decode_image",
    "lexically_inside",
    "load_image",
    "max_pixels",
    "name_problem",
]
