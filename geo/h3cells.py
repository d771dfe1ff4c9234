"""H3 cells for points given as (lon, lat), over h3's ``basic_int`` API.

Every function takes the hub's (lon, lat) order and hands h3 its own (lat, lng) order. Cells are
plain ints (the ``basic_int`` API is about twice as fast as the string one); ``cell_to_str`` gives
the usual hex form for people and JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from h3.api.basic_int import (
    average_hexagon_area,
    average_hexagon_edge_length,
    cell_area,
    cell_to_parent,
    get_resolution,
    grid_disk,
    int_to_str,
    latlng_to_cell,
)

DEFAULT_RES = 9  # about 0.1 km² a cell: a street block


def cell_of(lon: float, lat: float, res: int = DEFAULT_RES) -> int:
    """The H3 cell at ``res`` that contains the WGS-84 point (lon, lat).

    Parameters
    ----------
    lon, lat : float
        Degrees, in the hub's order (h3 itself takes latitude first).
    res : int
        H3 resolution, 0 to 15.

    Returns
    -------
    int
        The cell, in ``basic_int`` form.

    Raises
    ------
    h3.H3LatLngDomainError
        If a coordinate is not finite.

    Examples
    --------
    >>> cell_of(120.6994, 27.9938)
    618148927948193791
    """
    cell: int = latlng_to_cell(lat, lon, res)
    return cell


def parent_of(cell: int, res: int) -> int:
    """The ancestor of ``cell`` at the coarser resolution ``res``.

    Parameters
    ----------
    cell : int
        An H3 cell.
    res : int
        A resolution no finer than the cell's own.

    Returns
    -------
    int
        The parent cell.

    Raises
    ------
    h3.H3ResMismatchError
        If ``res`` is finer than the cell's resolution.

    Examples
    --------
    >>> parent_of(618148927948193791, 8)
    613645328322658303
    """
    parent: int = cell_to_parent(cell, res)
    return parent


def parents_of(cell: int, resolutions: Iterable[int] = (7, 8)) -> dict[int, int]:
    """The ancestors of ``cell`` at each of ``resolutions``, keyed by resolution.

    Parameters
    ----------
    cell : int
        An H3 cell.
    resolutions : iterable of int
        Resolutions no finer than the cell's own.

    Returns
    -------
    dict of int to int
        ``{resolution: parent cell}``.

    Examples
    --------
    >>> parents_of(618148927948193791)
    {7: 609141728699482111, 8: 613645328322658303}
    """
    return {res: parent_of(cell, res) for res in resolutions}


def ring_of(cell: int, k: int) -> set[int]:
    """The cells within ``k`` grid steps of ``cell``, itself included (h3's ``grid_disk``).

    Parameters
    ----------
    cell : int
        The centre cell.
    k : int
        Grid distance, 0 or more.

    Returns
    -------
    set of int
        1 cell for k=0, 7 for k=1, 19 for k=2, 3k(k+1)+1 in general (fewer near a pentagon).

    Examples
    --------
    >>> len(ring_of(618148927948193791, 2))
    19
    """
    return set(grid_disk(cell, k))


def cells_within_metres(lon: float, lat: float, metres: float, res: int = DEFAULT_RES) -> set[int]:
    """Cells that together cover every point within ``metres`` of (lon, lat).

    A cover, not an exact set: cells near the corners of the disk may lie wholly outside the
    circle.

    Parameters
    ----------
    lon, lat : float
        The centre, in degrees.
    metres : float
        The radius, 0 or more.
    res : int
        H3 resolution of the returned cells.

    Returns
    -------
    set of int
        ``ring_of(cell_of(lon, lat, res), k)`` for the smallest k that is sure to cover the
        circle.

    Examples
    --------
    >>> len(cells_within_metres(120.6994, 27.9938, 500))
    37
    """
    if not metres >= 0:
        raise ValueError(f"metres must be 0 or more, not {metres!r}")
    centre = cell_of(lon, lat, res)
    return ring_of(centre, rings_to_cover(centre, metres))


def rings_to_cover(cell: int, metres: float) -> int:
    """The grid distance k whose disk around ``cell`` covers a circle of ``metres`` around any
    point of ``cell``.

    Examples
    --------
    >>> rings_to_cover(618148927948193791, 500)
    3
    """
    # Edge length e: the resolution's average, scaled by this cell's size (sqrt of its area over
    # the average area), since cells of one resolution differ in size by up to about 2x (Wenzhou's
    # are 0.82 of the average area), less a 10 % margin for hexagons that are not regular.
    res = get_resolution(cell)
    scale = math.sqrt(cell_area(cell, "m^2") / average_hexagon_area(res, "m^2"))
    edge: float = 0.9 * scale * average_hexagon_edge_length(res, "m")
    # On a regular hex grid, the cells at grid distance k + 1 are at least (3k - 1) e / 2 away
    # from every point of the centre cell (the disk's side is 1.5 k e from the centre, its zigzag
    # edge at least e / 2 further out, and a point of the cell up to e from the centre). So the
    # disk covers the circle once (3k - 1) e / 2 >= metres, i.e. k >= (2 metres / e + 1) / 3.
    if metres == 0:
        return 0
    return math.ceil((2.0 * metres / edge + 1.0) / 3.0)


def cell_to_str(cell: int) -> str:
    """The usual hexadecimal form of ``cell``, for people and JSON.

    Examples
    --------
    >>> cell_to_str(618148927948193791)
    '8941b2cc4a3ffff'
    """
    text: str = int_to_str(cell)
    return text
